"""Bundles: manifest round trip, hash refusal, detect() geometry, artifact reuse/refusal, no torch."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import dark_box_onnx, image_with_box

from edgeprune.deploy.bundle import write_bundle
from edgeprune.errors import BundleError, IncompatibleArtifactError
from edgeprune.runtimes import get, load_bundle
from edgeprune.runtimes.bundle import check_artifact_compatible, read_manifest, verify_bundle
from edgeprune.runtimes.registry import sdk_version

BOX = (50, 30, 110, 80)


def make_bundle(tmp_path, runtime="onnxruntime", with_artifact=True, name="bundle"):
    onnx_path = dark_box_onnx(tmp_path / "m.onnx")
    rt = get(runtime)
    art = (
        rt.compile(onnx_path, tmp_path / f"build-{runtime}", precision="fp32", threads=1)
        if with_artifact
        else None
    )
    latency = {"median_ms": 1.5, "p90_ms": 1.7, "n": 30}
    return write_bundle(
        tmp_path / name,
        onnx_path,
        runtime={"name": runtime, "version": rt.version(), "precision": "fp32", "threads": 1},
        artifact=art,
        postprocess={"conf_thres": 0.3},
        device={"name": "test"},
        model_info={"candidate": "iter_00"},
        latency=latency,
        accuracy={"mAP50-95": 0.5},
    )


def test_manifest_round_trip(tmp_path):
    b = make_bundle(tmp_path)
    m = read_manifest(b)
    assert m["input"]["name"] == "images" and m["input"]["size"] == [64, 96]
    assert m["input"]["letterbox"] == {"pad_value": 114} and m["input"]["color"] == "RGB"
    assert m["class_names"] == ["a", "b"]
    assert m["output"]["layout"] == "cxcywh_obj_cls"
    assert m["postprocess"]["conf_thres"] == 0.3 and m["postprocess"]["iou_thres"] == 0.45
    assert m["runtime"]["name"] == "onnxruntime" and m["runtime"]["version"] == sdk_version("onnxruntime")
    assert m["model_info"]["sparsity"] == 0.0 and m["model_info"]["candidate"] == "iter_00"
    assert m["latency"]["median_ms"] == 1.5 and m["accuracy"] == {"mAP50-95": 0.5}
    assert "model.onnx" in m["files"] and "artifact/artifact.json" in m["files"]
    on_disk = {p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(m["files"]) == on_disk
    verify_bundle(b)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]  # no temp folder left


def test_rewrite_replaces_bundle_atomically(tmp_path):
    b = make_bundle(tmp_path)
    (b / "stray.txt").write_text("old")
    b2 = make_bundle(tmp_path, with_artifact=False)
    assert b2 == b and not (b / "stray.txt").exists() and not (b / "artifact").exists()
    assert read_manifest(b)["artifact"] is None


def test_tampered_byte_is_refused_naming_the_file(tmp_path):
    b = make_bundle(tmp_path)
    data = bytearray((b / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="'model.onnx'.*SHA-256"):
        load_bundle(b)


def test_missing_file_is_refused_naming_the_file(tmp_path):
    b = make_bundle(tmp_path)
    (b / "artifact" / "artifact.json").unlink()
    with pytest.raises(BundleError, match="'artifact/artifact.json'.*missing"):
        load_bundle(b)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="manifest.json"):
        load_bundle(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(BundleError, match="not an edgeprune bundle"):
        read_manifest(tmp_path)


def check_box(det, box=BOX, tol=3.0):
    assert len(det) == 1
    assert det.class_ids[0] == 1
    assert det.scores[0] == pytest.approx(0.9, abs=1e-5)
    np.testing.assert_allclose(det.boxes[0], np.array(box, np.float32), atol=tol)


@pytest.mark.parametrize("shape,box", [((120, 200), BOX), ((300, 90), (10, 200, 60, 280))])
def test_detect_returns_boxes_in_original_pixels(tmp_path, shape, box):
    with load_bundle(make_bundle(tmp_path)) as det:
        assert det.artifact_source == "bundle"
        d = det.detect(image_with_box(shape, box))
        # one network pixel is 1/r original pixels; area resizing blurs the box edge by about one
        r = min(64 / shape[0], 96 / shape[1])
        check_box(d, box, tol=1.5 / r)
        t = det.timings
        assert t["calls"] == 1 and t["infer_ms"] > 0 and t["pre_ms"] > 0 and t["post_ms"] > 0
        det.detect(image_with_box(shape, box))
        assert det.timings["calls"] == 2
        assert det.timings["avg_total_ms"] > 0


@pytest.mark.parametrize("runtime", ["onnxruntime", "opencv", "openvino"])
def test_bundle_holds_no_file_twice_and_runs_its_artifact(tmp_path, runtime):
    if sdk_version(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    b = make_bundle(tmp_path, runtime=runtime)
    by_hash: dict[str, list[str]] = {}
    for p in sorted(b.rglob("*")):
        if p.is_file():
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            by_hash.setdefault(digest, []).append(p.relative_to(b).as_posix())
    assert [names for names in by_hash.values() if len(names) > 1] == []
    with load_bundle(b) as det:
        assert det.artifact_source == "bundle"
        check_box(det.detect(image_with_box()))
        if runtime != "openvino":  # the artifact is the ONNX: the bundle's one copy, hash-checked
            assert Path(det.session.artifact.path) == (b / "model.onnx").resolve()


def test_threshold_override_drops_detection(tmp_path):
    with load_bundle(make_bundle(tmp_path), conf_thres=0.95) as det:
        assert len(det.detect(image_with_box())) == 0


@pytest.mark.skipif(sdk_version("openvino") is None, reason="openvino not installed")
def test_openvino_bundle_and_runtime_override(tmp_path):
    b = make_bundle(tmp_path, runtime="openvino")
    m = read_manifest(b)
    assert any(f.endswith(".xml") for f in m["files"])
    with load_bundle(b) as det:
        assert det.runtime == "openvino" and det.artifact_source == "bundle"
        check_box(det.detect(image_with_box()))
    with load_bundle(b, runtime="onnxruntime") as det:  # other runtime: compiled from model.onnx
        assert det.runtime == "onnxruntime" and det.artifact_source == "compiled from model.onnx"
        check_box(det.detect(image_with_box()))


def test_artifact_of_other_version_is_recompiled_for_portable_runtime(tmp_path):
    b = make_bundle(tmp_path)
    m = json.loads((b / "manifest.json").read_text())
    m["artifact"]["runtime_version"] = "0.0.1"
    (b / "manifest.json").write_text(json.dumps(m))  # the manifest itself is not hashed
    with load_bundle(b) as det:
        assert det.artifact_source == "compiled from model.onnx"
        check_box(det.detect(image_with_box()))


def test_tensorrt_engine_of_other_version_or_gpu_is_refused():
    with pytest.raises(IncompatibleArtifactError, match="built with tensorrt 8.6.1.*has 10.3.0"):
        check_artifact_compatible("tensorrt", {"runtime_version": "8.6.1"}, "10.3.0", "Orin")
    with pytest.raises(IncompatibleArtifactError, match="GPU 'Xavier'.*'Orin'"):
        check_artifact_compatible(
            "tensorrt", {"runtime_version": "10.3.0", "gpu_name": "Xavier"}, "10.3.0", "Orin"
        )
    check_artifact_compatible("tensorrt", {"runtime_version": "10.3.0", "gpu_name": "Orin"}, "10.3.0", "Orin")
    check_artifact_compatible("openvino", {"runtime_version": "2024.0"}, "2026.4", None)  # portable IR


def test_load_bundle_needs_no_torch(tmp_path):
    b = make_bundle(tmp_path)
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('torch must not be imported here')\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from bundle_helpers import image_with_box
        from edgeprune.runtimes import load_bundle
        det = load_bundle({str(b)!r})
        d = det.detect(image_with_box())
        assert "torch" not in sys.modules or sys.modules["torch"] is None
        print(len(d), det.artifact_source)
    """)
    env = {**os.environ, "PYTHONPATH": str(shim.parent)}
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "bundle"]
