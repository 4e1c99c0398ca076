"""OpenCV 5's new DNN engine ignores backend/target choices; non-default ones must use the classic engine."""

import numpy as np
import pytest

from edgeprune.errors import CompileError, InvalidConfigError, UnsupportedPrecisionError
from edgeprune.runtimes import available, get
from edgeprune.runtimes.opencv_backend import resolve_options

pytestmark = pytest.mark.skipif("opencv" not in available(), reason="OpenCV is not installed")


def test_default_backend_keeps_requested_engine():
    o = resolve_options()
    assert (o["backend"], o["target"], o["engine"]) == ("opencv", "cpu", "auto")


@pytest.mark.parametrize("backend,target", [("cuda", "cuda"), ("openvino", "cpu"), ("opencv", "opencl")])
def test_non_default_backend_or_target_forces_classic(backend, target):
    o = resolve_options(backend, target, "auto")
    assert o["engine"] == "classic" and "classic" in o["engine_reason"]
    with pytest.raises(CompileError, match="new DNN engine ignores"):
        resolve_options(backend, target, "new")


def test_fp16_mapping_and_refusal():
    with pytest.raises(UnsupportedPrecisionError, match="ARMv8"):
        resolve_options(precision="fp16", machine="x86_64")
    arm = resolve_options(precision="fp16", machine="aarch64")
    assert arm["target"] == "cpu_fp16" and arm["engine"] == "classic"
    assert resolve_options("cuda", "cuda", precision="fp16")["target"] == "cuda_fp16"
    with pytest.raises(UnsupportedPrecisionError):
        resolve_options(precision="int8")
    with pytest.raises(InvalidConfigError, match="unknown"):
        resolve_options(backend="tpu")


def test_default_compile_records_engine(tiny_onnx, tmp_path):
    import cv2

    path, _, _ = tiny_onnx
    art = get("opencv").compile(path, tmp_path / "a")
    expected = "new" if int(cv2.__version__.split(".")[0]) >= 5 else "classic"
    assert art.meta["engine"] == expected and art.meta["engine_requested"] == "auto"


def test_opencl_target_is_compiled_on_the_classic_engine(tiny_onnx, tmp_path):
    path, _, _ = tiny_onnx
    rt = get("opencv")
    art = rt.compile(path, tmp_path / "ocl", target="opencl")
    assert art.meta["engine"] == "classic" and art.options["engine"] == "classic"
    with rt.session(art) as s:
        assert s.engine == "classic"
        assert s.infer({"images": np.zeros((1, 3, 8, 8), np.float32)})[0].shape == (1, 4, 8, 8)


def test_unavailable_backend_fails_at_compile_not_silently(tiny_onnx, tmp_path):
    import cv2

    path, _, _ = tiny_onnx
    if cv2.cuda.getCudaEnabledDeviceCount() > 0:
        pytest.skip("CUDA is available here")
    # the new engine would have run this on the CPU with only a log warning
    with pytest.raises(CompileError, match="backend 'cuda'"):
        get("opencv").compile(path, tmp_path / "cuda", backend="cuda", target="cuda")
