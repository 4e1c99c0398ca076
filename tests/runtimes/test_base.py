"""Artifact JSON round trip and input validation of Session."""

import shutil

import numpy as np
import pytest

from edgeprune.errors import IncompatibleArtifactError, InvalidConfigError, InvalidInputError
from edgeprune.runtimes import get
from edgeprune.runtimes.base import Artifact, Session, TensorSpec
from edgeprune.runtimes.environment import collect


def test_artifact_dict_round_trip():
    a = Artifact(
        "onnxruntime",
        "/x/model.onnx",
        ["/x/model.onnx"],
        "fp32",
        {"threads": 2},
        "ab" * 32,
        {"compile_s": 0.1},
    )
    assert Artifact.from_dict(a.to_dict()) == a
    with pytest.raises(InvalidConfigError, match="unknown keys"):
        Artifact.from_dict({**a.to_dict(), "bogus": 1})


def test_artifact_save_load_is_relocatable(tmp_path):
    d = tmp_path / "a"
    d.mkdir()
    (d / "model.xml").write_text("x")
    (d / "model.bin").write_text("y")
    a = Artifact(
        "openvino", str(d / "model.xml"), [str(d / "model.xml"), str(d / "model.bin")], meta={"k": 1}
    )
    a.save()
    text = (d / "artifact.json").read_text()
    assert str(tmp_path) not in text  # relative paths only
    shutil.move(str(d), str(tmp_path / "moved"))
    b = Artifact.load(tmp_path / "moved")
    assert b.path == str((tmp_path / "moved" / "model.xml").resolve())
    assert b.meta == {"k": 1} and len(b.files) == 2
    (tmp_path / "moved" / "model.bin").unlink()
    with pytest.raises(InvalidConfigError, match="missing"):
        Artifact.load(tmp_path / "moved")
    with pytest.raises(InvalidConfigError, match="no compiled artifact"):
        Artifact.load(tmp_path / "nothing-here")


class Echo(Session):
    def __init__(self):
        super().__init__(Artifact("fake", "/m"))
        self.inputs = [TensorSpec("images", (1, 3, None, 4), np.dtype("float32"))]
        self.outputs = [TensorSpec("output", (1, 3, None, 4), np.dtype("float32"))]

    def _run(self, feeds):
        return [feeds["images"]]


def test_validation_names_the_input():
    s = Echo()
    ok = np.zeros((1, 3, 7, 4), np.float32)  # dim 2 is dynamic
    assert s.infer({"images": ok})[0].shape == (1, 3, 7, 4)
    assert s.input_shapes == {"images": (1, 3, None, 4)} and s.output_names == ["output"]
    with pytest.raises(InvalidInputError, match="missing input 'images'"):
        s.infer({})
    with pytest.raises(InvalidInputError, match="unknown input 'extra'"):
        s.infer({"images": ok, "extra": ok})
    with pytest.raises(InvalidInputError, match="'images' has dtype float64"):
        s.infer({"images": ok.astype(np.float64)})
    with pytest.raises(InvalidInputError, match=r"'images' has shape \(1, 3, 7, 5\)"):
        s.infer({"images": np.zeros((1, 3, 7, 5), np.float32)})
    with pytest.raises(InvalidInputError, match="numpy array"):
        s.infer({"images": [[0.0]]})
    with s:
        pass
    assert s.closed
    with pytest.raises(InvalidInputError, match="closed"):
        s.infer({"images": ok})


def test_session_refuses_artifact_of_another_runtime(tiny_onnx, tmp_path):
    path, _, _ = tiny_onnx
    art = get("onnxruntime").compile(path, tmp_path / "ort")
    art.runtime = "openvino"
    with pytest.raises(IncompatibleArtifactError, match="compiled for 'openvino'"):
        get("onnxruntime").session(art)


def test_environment_fields_and_extra():
    env = collect("onnxruntime", threads=2, precision="fp32", extra={"device": "CPU", "threads": None})
    assert env["runtime"] == "onnxruntime" and env["runtime_version"]
    assert env["threads"] == 2  # a None in extra never erases a known value
    assert env["device"] == "CPU"
    for key in ("cpu_model", "cores", "os", "python", "numpy", "cpu_governor"):
        assert key in env
    assert env["cores"] >= 1
