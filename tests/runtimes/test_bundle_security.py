"""Bundles cannot make load_bundle read or run files outside the bundle; what runs is hash-checked;
detect() states and checks its input contract; numeric manifest fields are validated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import dark_box_onnx, image_with_box

from edgeprune.deploy.bundle import write_bundle
from edgeprune.errors import BundleError, InvalidConfigError, InvalidInputError
from edgeprune.runtimes import get, load_bundle
from edgeprune.runtimes.bundle import read_manifest


def _bundle(tmp_path, name="bundle", with_artifact=True, postprocess=None):
    onnx_path = dark_box_onnx(tmp_path / f"{name}.onnx")
    rt = get("onnxruntime")
    art = rt.compile(onnx_path, tmp_path / f"build-{name}", threads=1) if with_artifact else None
    return write_bundle(tmp_path / name, onnx_path,
                        runtime={"name": "onnxruntime", "version": rt.version(), "precision": "fp32",
                                 "threads": 1},
                        artifact=art, postprocess=postprocess or {"conf_thres": 0.3})


def _edit(bundle: Path, fn) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    fn(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("bad", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx", "C:\\\\x.onnx"])
def test_model_and_files_outside_the_bundle_are_refused(tmp_path, bad):
    b = _bundle(tmp_path, with_artifact=False)

    def point_outside(m):
        m["files"][bad] = m["files"].pop(m["model"])
        m["model"] = bad

    _edit(b, point_outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(b)


def test_symlinked_model_is_refused(tmp_path):
    b = _bundle(tmp_path, with_artifact=False)
    other = dark_box_onnx(tmp_path / "elsewhere.onnx")
    (b / "model.onnx").unlink()
    (b / "model.onnx").symlink_to(other)  # same bytes, so its hash would even match
    with pytest.raises(BundleError, match="symlink"):
        load_bundle(b)
    with pytest.raises(BundleError, match="symlink"):
        load_bundle(b, verify=False)


def test_artifact_dir_of_another_bundle_is_refused(tmp_path):
    a = _bundle(tmp_path, name="a")
    b = _bundle(tmp_path, name="b")
    _edit(b, lambda m: m["artifact"].update(dir="../a/artifact"))
    with pytest.raises(BundleError, match="outside the bundle"):
        load_bundle(b, verify=False)
    assert a.exists()


def test_artifact_files_must_be_hashed_bundle_files(tmp_path):
    b = _bundle(tmp_path)
    art_json = b / "artifact" / "artifact.json"
    data = json.loads(art_json.read_text())
    outside = tmp_path / "build-bundle" / Path(data["path"]).name
    data["path"] = str(outside)  # an absolute path to a file that was never hash-checked
    art_json.write_text(json.dumps(data))
    _edit(b, lambda m: m["files"].update({"artifact/artifact.json": _sha(art_json)}))
    with pytest.raises(BundleError, match="not one of the bundle's hashed files"):
        load_bundle(b)


def _sha(p: Path) -> str:
    from edgeprune.fileio import sha256_file

    return sha256_file(p)


def test_artifact_source_is_truthful(tmp_path):
    b = _bundle(tmp_path)
    with load_bundle(b) as det:
        assert det.artifact_source == "bundle"
    with load_bundle(b, verify=False) as det:
        assert det.artifact_source.startswith("bundle (hashes not checked")
    with load_bundle(_bundle(tmp_path, name="plain", with_artifact=False)) as det:
        assert det.artifact_source == "compiled from model.onnx"


def test_corrupt_artifact_json_is_one_bundle_error(tmp_path):
    b = _bundle(tmp_path)
    (b / "artifact" / "artifact.json").write_text("{not json")
    with pytest.raises(BundleError, match="artifact"):
        load_bundle(b, verify=False)


@pytest.mark.parametrize("image, match", [
    (image_with_box().astype(np.float32) / 255, "float image in 0..1"),
    (image_with_box().astype(np.uint16) * 257, "16-bit"),
    (image_with_box()[:, :, 0], "shape"),
    (np.dstack([image_with_box(), image_with_box()[:, :, :1]]), "shape"),
    ([[0, 0, 0]], "numpy"),
])
def test_detect_refuses_images_outside_its_contract(tmp_path, image, match):
    with load_bundle(_bundle(tmp_path, with_artifact=False)) as det:
        with pytest.raises(InvalidInputError, match=match):
            det.detect(image)
        assert len(det.detect(image_with_box())) == 1  # the contract: uint8 BGR HxWx3


@pytest.mark.parametrize("field, value", [("conf_thres", "high"), ("iou_thres", 2.0), ("conf_thres", True),
                                          ("max_det", 0), ("class_agnostic", "yes")])
def test_numeric_manifest_fields_are_checked_at_write_and_read(tmp_path, field, value):
    with pytest.raises(BundleError, match=f"postprocess.{field}"):
        _bundle(tmp_path, name="w", with_artifact=False, postprocess={field: value})
    b = _bundle(tmp_path, with_artifact=False)
    _edit(b, lambda m: m["postprocess"].update({field: value}))
    with pytest.raises(BundleError, match=f"postprocess.{field}"):
        read_manifest(b)


def test_sweep_config_threshold_is_checked_when_loaded(tmp_path):
    from edgeprune.deploy.config import validate

    raw = {"run_dir": "r", "model": "demo", "targets": ["t"], "out_dir": "o",
           "postprocess": {"conf_thres": "high"}}
    with pytest.raises(InvalidConfigError, match="conf_thres"):
        validate(raw, tmp_path)


def test_deeply_nested_manifest_is_one_error(tmp_path):
    b = _bundle(tmp_path, with_artifact=False)
    (b / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(b)
    shutil.rmtree(b)
