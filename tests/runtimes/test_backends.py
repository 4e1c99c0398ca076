"""Each CPU runtime installed here: compile -> session -> infer matches numpy; profile; threads; JSON."""

import numpy as np
import pytest

from edgeprune.errors import CompileError, InvalidConfigError, UnsupportedPrecisionError
from edgeprune.runtimes import available, get
from edgeprune.runtimes.base import Artifact

from .conftest import conv_relu_reference

CPU_RUNTIMES = ["onnxruntime", "openvino", "opencv"]


def _runtime(name):
    if name not in available():
        pytest.skip(f"{name} is not installed")
    return get(name)


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_compile_infer_matches_reference(name, tiny_onnx, tmp_path):
    path, W, B = tiny_onnx
    rt = _runtime(name)
    art = rt.compile(path, tmp_path / name, precision="fp32", threads=1)
    assert art.runtime == name and art.precision == "fp32" and art.options["threads"] == 1
    assert art.meta["compile_s"] >= 0 and art.meta["runtime_version"] == rt.version()
    assert len(art.onnx_sha256) == 64
    x = np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)
    with rt.session(art) as s:
        assert s.input_names == ["images"] and s.output_names == ["output"]
        assert s.input_shapes == {"images": (1, 3, 8, 8)}
        (y,) = s.infer({"images": x})
    np.testing.assert_allclose(y, conv_relu_reference(x, W, B), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_profile_returns_sane_stats(name, tiny_onnx, tmp_path):
    path, _, _ = tiny_onnx
    rt = _runtime(name)
    art = rt.compile(path, tmp_path / name, threads=1)
    x = np.zeros((1, 3, 8, 8), np.float32)
    with rt.session(art) as s:
        st = s.profile({"images": x}, warmup_runs=2, warmup_s=0, min_runs=25, min_s=0, max_repeats=1)
    assert st.n >= 25 and st.median_ms > 0
    assert st.min_ms <= st.p10_ms <= st.median_ms <= st.p90_ms <= st.p99_ms <= st.max_ms
    assert st.env["runtime"] == name and st.env["threads"] == 1 and st.env["precision"] == "fp32"


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_artifact_json_round_trip_reopens(name, tiny_onnx, tmp_path):
    path, _, _ = tiny_onnx
    rt = _runtime(name)
    art = rt.compile(path, tmp_path / name, threads=1)
    loaded = Artifact.load(tmp_path / name)
    assert loaded.to_dict() == art.to_dict()
    with rt.session(tmp_path / name) as s:  # open from the folder
        assert s.infer({"images": np.ones((1, 3, 8, 8), np.float32)})[0].shape == (1, 4, 8, 8)


def test_onnxruntime_threads_and_fp16_refused(tiny_onnx, tmp_path):
    path, _, _ = tiny_onnx
    rt = _runtime("onnxruntime")
    art = rt.compile(path, tmp_path / "a", threads=1, graph_optimization_level="basic", save_optimized=True)
    with rt.session(art) as s:
        assert s.intra_op_threads == 1
        assert s.providers == ["CPUExecutionProvider"]
    assert (tmp_path / "a" / "model.optimized.onnx").is_file()
    with pytest.raises(UnsupportedPrecisionError, match="fp16"):
        rt.compile(path, tmp_path / "b", precision="fp16")
    with pytest.raises(UnsupportedPrecisionError):
        rt.compile(path, tmp_path / "b", precision="int8")
    with pytest.raises(CompileError, match="not available"):
        rt.compile(path, tmp_path / "b", providers=["CUDAExecutionProvider"])
    with pytest.raises(InvalidConfigError, match="unknown options"):
        rt.compile(path, tmp_path / "b", providres=["x"])


def test_openvino_threads_precision_and_fp32_weights(tiny_onnx, tmp_path):
    path, W, B = tiny_onnx
    rt = _runtime("openvino")
    art = rt.compile(path, tmp_path / "ov", threads=1)
    # the IR keeps fp32 weights (save_model's default would compress them to fp16)
    assert (tmp_path / "ov" / "model.bin").stat().st_size >= (W.size + B.size) * 4
    with rt.session(art) as s:
        assert int(s.property("INFERENCE_NUM_THREADS")) == 1
        assert s.environment()["inference_precision"] == "f32"
    with pytest.raises(UnsupportedPrecisionError, match="int8"):
        rt.compile(path, tmp_path / "ov8", precision="int8")
    with pytest.raises(CompileError, match="not available"):
        rt.compile(path, tmp_path / "ovx", device="NOSUCHDEVICE")
    caps = rt.capabilities()
    if "FP16" not in caps:
        with pytest.raises(UnsupportedPrecisionError):
            rt.compile(path, tmp_path / "ov16", precision="fp16")


def test_opencv_threads_applied(tiny_onnx, tmp_path):
    import cv2

    path, _, _ = tiny_onnx
    rt = _runtime("opencv")
    before = cv2.getNumThreads()
    try:
        art = rt.compile(path, tmp_path / "cv", threads=1)
        cv2.setNumThreads(2)
        with rt.session(art) as s:
            s.infer({"images": np.zeros((1, 3, 8, 8), np.float32)})
            assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
