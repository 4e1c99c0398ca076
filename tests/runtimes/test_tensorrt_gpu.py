"""The real TensorRT build + inference path (needs TensorRT, CUDA (pycuda or libcudart) and an NVIDIA GPU)."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from .conftest import conv_relu_reference


def _cuda_present() -> bool:
    from edgeprune.runtimes.cuda_runtime import find_cudart

    return importlib.util.find_spec("pycuda") is not None or find_cudart() is not None


pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.gpu,
    pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None, reason="TensorRT is not installed"),
    pytest.mark.skipif(not _cuda_present(), reason="neither pycuda nor libcudart is installed"),
]


def test_build_infer_and_reuse_cached_engine(tiny_onnx, tmp_path):
    from edgeprune.runtimes import get

    path, W, B = tiny_onnx
    rt = get("tensorrt")
    art = rt.compile(path, tmp_path / "trt", precision="fp32", timing_cache=str(tmp_path / "tc.cache"))
    assert not art.meta["cache_hit"] and Path(art.path).is_file()
    assert (tmp_path / "tc.cache").is_file()
    sidecar = json.loads(Path(art.path + ".json").read_text())
    assert sidecar["key_fields"]["tensorrt_version"] == rt.version()
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    with rt.session(art) as s:
        (y,) = s.infer({"images": x})
        st = s.profile({"images": x}, warmup_runs=2, warmup_s=0, min_runs=10, min_s=0)
    np.testing.assert_allclose(y, conv_relu_reference(x, W, B), rtol=1e-3, atol=1e-3)
    assert st.n >= 10 and st.median_ms > 0
    again = rt.compile(path, tmp_path / "trt", precision="fp32")
    assert again.meta["cache_hit"] and again.path == art.path


def test_engine_with_foreign_sidecar_is_refused(tiny_onnx, tmp_path):
    from edgeprune.errors import IncompatibleArtifactError
    from edgeprune.runtimes import get

    path, _, _ = tiny_onnx
    rt = get("tensorrt")
    art = rt.compile(path, tmp_path / "trt")
    side = Path(art.path + ".json")
    data = json.loads(side.read_text())
    data["key_fields"]["gpu_name"] = "Some Other GPU"
    side.write_text(json.dumps(data))
    with pytest.raises(IncompatibleArtifactError, match="gpu_name"):
        rt.session(art)


@pytest.mark.skipif(shutil.which("trtexec") is None, reason="trtexec is not on PATH")
def test_trtexec_loads_the_plain_engine(tiny_onnx, tmp_path):
    from edgeprune.runtimes import get

    path, _, _ = tiny_onnx
    rt = get("tensorrt")
    art = rt.compile(path, tmp_path / "trt", precision="fp16")
    from edgeprune.runtimes.trtexec import TrtexecRunOptions

    st = rt.profile_trtexec(art, TrtexecRunOptions(warmup_ms=100, duration_s=0.5, iterations=20))
    assert st.median_ms > 0
