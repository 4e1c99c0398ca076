"""The TensorRT backend's logic with stand-ins for TensorRT, pycuda and libcudart (no GPU needed):
both CUDA paths, any-thread sessions, one engine per cache key whichever builder built it, INT8 and
DLA rules, refusals that say how to rebuild, and the GPU name a bundle checks."""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
import trt_fakes as fk

from edgeprune.errors import CompileError, IncompatibleArtifactError, UnsupportedPrecisionError
from edgeprune.runtimes import cuda_runtime
from edgeprune.runtimes import tensorrt_backend as tb

from .conftest import make_conv_relu


@pytest.fixture(params=["pycuda", "cudart"])
def stack(request, monkeypatch):
    """Fake TensorRT plus one CUDA path; yields (trt module, path name, fake lib or driver)."""
    trt = fk.make_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    cuda_runtime.reset()
    getattr(tb, "_LOGGERS", {}).clear()
    if request.param == "pycuda":
        drv = fk.make_pycuda()
        pkg = types.ModuleType("pycuda")
        pkg.driver = drv
        monkeypatch.setitem(sys.modules, "pycuda", pkg)
        monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
        backend = drv
    else:
        monkeypatch.setitem(sys.modules, "pycuda", None)  # import pycuda fails, as on a bare JetPack
        monkeypatch.setitem(sys.modules, "pycuda.driver", None)
        backend = fk.FakeCudart()
        monkeypatch.setattr(cuda_runtime, "load_cudart", lambda: cuda_runtime.CudartApi(backend, "fake"))
    monkeypatch.delenv("EDGEPRUNE_CUDA", raising=False)
    yield trt, request.param, backend
    cuda_runtime.reset()
    getattr(tb, "_LOGGERS", {}).clear()


@pytest.fixture
def onnx(tmp_path):
    return make_conv_relu(tmp_path / "m.onnx")[0]


def test_cuda_path_is_chosen_without_pycuda_and_the_key_needs_no_pycuda(stack):
    trt, path, _ = stack
    assert cuda_runtime.get_cuda().name == path
    fields = tb.current_fields("a" * 64, tb.to.TrtBuildOptions(precision="fp16"))
    assert fields["gpu_name"] == "Orin" and fields["compute_capability"] == "8.7"
    assert fields["tensorrt_version"] == "8.5.2.2"


def test_both_cuda_paths_give_the_same_cache_key(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fk.make_tensorrt())
    opts = tb.to.TrtBuildOptions(precision="fp16")
    keys = []
    for api in (cuda_runtime.PycudaApi(fk.make_pycuda()), cuda_runtime.CudartApi(fk.FakeCudart())):
        monkeypatch.setattr(tb, "get_cuda", lambda api=api: api)
        keys.append(tb.to.cache_key(tb.current_fields("b" * 64, opts)))
    assert keys[0] == keys[1]


def test_compile_and_infer_with_our_dtype_map_and_one_logger(stack, onnx, tmp_path):
    trt, path, _ = stack
    with pytest.raises(AttributeError):
        trt.nptype(trt.DataType.FLOAT)  # TensorRT 8.5 with numpy 1.24..1.26: unusable
    rt = tb.TensorRTRuntime()
    art = rt.compile(onnx, tmp_path / "w", precision="fp16")
    assert art.meta["gpu_name"] == "Orin" and art.meta["cuda_path"] == path and not art.meta["cache_hit"]
    x = np.arange(192, dtype=np.float32).reshape(1, 3, 8, 8)
    with rt.session(art) as s:
        (y,) = s.infer({"images": x})
        assert s.outputs[0].dtype == np.float32
        env = s.environment()
    np.testing.assert_array_equal(y, 2 * x)
    assert "Orin" in json.dumps(env)
    assert len(trt.loggers) == 1  # one trt.Logger served the build and the run
    assert getattr(fk._TLS, "stack", []) == []  # nothing left pushed on this thread
    again = rt.compile(onnx, tmp_path / "w", precision="fp16")
    assert again.meta["cache_hit"] and again.path == art.path


def test_numpy_dtype_map():
    names = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "BOOL": np.bool_,
             "UINT8": np.uint8, "INT64": np.int64}
    for name, want in names.items():
        assert tb.numpy_dtype(fk._Enum(name)) == np.dtype(want)
    with pytest.raises(CompileError, match="BF16 has no numpy equivalent"):
        tb.numpy_dtype(fk._Enum("BF16"))


def test_session_works_from_another_thread_and_leaves_no_context_behind(stack, onnx, tmp_path):
    trt, path, backend = stack
    rt = tb.TensorRTRuntime()
    art = rt.compile(onnx, tmp_path / "w")
    sess = rt.session(art)
    x = np.ones((1, 3, 8, 8), np.float32)
    seen = {}

    def worker():  # an OpenCV capture thread: never opened the session, uses it anyway
        seen["y"] = sess.infer({"images": x})[0]
        seen["stack"] = list(getattr(fk._TLS, "stack", []))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    np.testing.assert_array_equal(seen["y"], 2 * x)
    assert seen["stack"] == []  # popped after the call: a thread may end without close()
    if path == "pycuda":
        assert len(set(backend.pushes)) >= 2  # pushed on each calling thread, not once in __init__
    sess.close()


def test_thread_that_exits_without_close_is_safe_and_memory_is_freed(stack, onnx, tmp_path):
    trt, path, backend = stack
    rt = tb.TensorRTRuntime()
    art = rt.compile(onnx, tmp_path / "w")
    box = {}

    def worker():
        box["s"] = rt.session(art)
        box["y"] = box["s"].infer({"images": np.ones((1, 3, 8, 8), np.float32)})[0]
        box["stack"] = list(getattr(fk._TLS, "stack", []))

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert box["stack"] == [] and box["y"].sum() == 2 * 192
    addrs = [int(dev) for _, dev in box["s"].buffers.values()]
    assert all(a in fk.MEM.blocks for a in addrs)
    box["s"].close()  # closed later from another thread
    assert not any(a in fk.MEM.blocks for a in addrs)
    box["s"].close()  # twice is fine
    if path == "cudart":
        assert not backend.streams and not backend.pinned


def test_closed_session_refuses_to_run(stack, onnx, tmp_path):
    rt = tb.TensorRTRuntime()
    s = rt.session(rt.compile(onnx, tmp_path / "w"))
    s.close()
    with pytest.raises(Exception, match="closed"):
        s.infer({"images": np.ones((1, 3, 8, 8), np.float32)})


class Calibrator:
    """A user's calibrator (subclasses the fake TensorRT's base, as a real one subclasses trt's)."""

    def __init__(self, trt, batches: int = 3) -> None:
        self.base = trt.IInt8EntropyCalibrator2
        self.left, self.written = batches, None

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        if self.left == 0:
            return None
        self.left -= 1
        return [1000 + self.left]

    def read_calibration_cache(self):
        return None

    def write_calibration_cache(self, cache):
        self.written = bytes(cache)


def user_calibrator(trt, **kw):
    cls = type("UserCalib", (trt.IInt8EntropyCalibrator2, Calibrator), {})
    obj = cls.__new__(cls)
    Calibrator.__init__(obj, trt, **kw)
    return obj


@pytest.fixture
def fake_trtexec(tmp_path, monkeypatch):
    exe = fk.write_fake_trtexec(tmp_path)
    monkeypatch.setattr(tb.trtexec, "find_trtexec", lambda: str(exe))
    return exe


def engine_build(art) -> dict:
    return json.loads(Path(art.path).read_bytes()[len(b"FAKEPLAN"):])["build"]


def test_int8_one_engine_per_key_whichever_builder(stack, onnx, tmp_path, fake_trtexec):
    trt, _, _ = stack
    rt = tb.TensorRTRuntime()
    cache = tmp_path / "calib.cache"
    with pytest.raises(UnsupportedPrecisionError, match="int8_calibration_cache"):
        rt.compile(onnx, tmp_path / "a", precision="int8", calibrator=user_calibrator(trt))
    with pytest.raises(UnsupportedPrecisionError, match="builder='python' and calibrator"):
        rt.compile(onnx, tmp_path / "a", precision="int8", builder="trtexec",
                   int8_calibration_cache=str(cache))
    assert fk.calls_of(fake_trtexec) == []  # refused before trtexec ran with placeholder ranges
    with pytest.raises(UnsupportedPrecisionError, match="pass calibrator"):
        rt.compile(onnx, tmp_path / "a", precision="int8", int8_calibration_cache=str(cache))
    user = user_calibrator(trt)
    py = rt.compile(onnx, tmp_path / "py", precision="int8", calibrator=user,
                    int8_calibration_cache=str(cache))
    assert cache.is_file() and user.written == cache.read_bytes()  # the user's calibrator saw it too
    side = json.loads(Path(py.path + ".json").read_text())
    assert side["key_fields"]["options"]["int8_calibration_sha256"] == tb.to.calibration_sha256(str(cache))
    ex = rt.compile(onnx, tmp_path / "ex", precision="int8", builder="trtexec",
                    int8_calibration_cache=str(cache))
    assert Path(ex.path).name == Path(py.path).name  # one key...
    assert engine_build(ex) == engine_build(py)  # ...one engine: same flags, same calibration ranges
    assert engine_build(py)["calibration"] not in (None, "placeholder")
    # the same cache somewhere else is the same engine; changed ranges are another one
    moved = tmp_path / "elsewhere.cache"
    moved.write_bytes(cache.read_bytes())
    again = rt.compile(onnx, tmp_path / "py", precision="int8", int8_calibration_cache=str(moved))
    assert again.meta["cache_hit"] and again.path == py.path
    moved.write_bytes(b"other ranges")
    other = rt.compile(onnx, tmp_path / "py", precision="int8", int8_calibration_cache=str(moved))
    assert other.path != py.path


def test_dla_fp32_is_fp16_for_both_builders(stack, onnx, tmp_path, fake_trtexec):
    rt = tb.TensorRTRuntime()
    py = rt.compile(onnx, tmp_path / "py", precision="fp32", dla_core=0)
    ex = rt.compile(onnx, tmp_path / "ex", precision="fp32", dla_core=0, builder="trtexec")
    assert py.precision == ex.precision == "fp16" and "DLA runs fp16/int8 only" in py.meta["precision_note"]
    assert Path(py.path).name == Path(ex.path).name and engine_build(py) == engine_build(ex)
    assert engine_build(py)["fp16"] is True and engine_build(py)["dla_core"] == 0
    assert "--fp16" in fk.calls_of(fake_trtexec)[-1]


def test_engine_with_other_settings_or_edited_sidecar_is_refused_with_the_fix(stack, onnx, tmp_path):
    rt = tb.TensorRTRuntime()
    art = rt.compile(onnx, tmp_path / "w", precision="fp16")
    side = Path(art.path + ".json")
    good = side.read_text()
    data = json.loads(good)
    data["key_fields"]["precision"] = "fp32"  # edited by hand: the key no longer matches
    side.write_text(json.dumps(data))
    with pytest.raises(IncompatibleArtifactError, match="cache_key does not match.*rebuild it on this"):
        rt.session(art)
    data["cache_key"] = tb.to.cache_key(data["key_fields"])  # consistent, but another build
    side.write_text(json.dumps(data))
    with pytest.raises(IncompatibleArtifactError, match=r"differs in: precision.*compile\(onnx, workdir"):
        rt.session(art)
    data = json.loads(good)
    data["key_fields"]["gpu_name"] = "Xavier"
    data["cache_key"] = tb.to.cache_key(data["key_fields"])
    side.write_text(json.dumps(data))
    with pytest.raises(IncompatibleArtifactError, match="gpu_name: built 'Xavier', here 'Orin'.*rebuild"):
        rt.session(art)


def test_bundle_records_and_checks_the_gpu_the_backend_wrote(stack, tmp_path, monkeypatch):
    """The real writer (TensorRT compile -> write_bundle) and the real reader (load_bundle)."""
    pytest.importorskip("onnx")
    from bundle_helpers import dark_box_onnx

    from edgeprune.deploy.bundle import write_bundle
    from edgeprune.runtimes import registry
    from edgeprune.runtimes.bundle import load_bundle, read_manifest

    onnx_path = dark_box_onnx(tmp_path / "det.onnx")
    rt = tb.TensorRTRuntime()
    monkeypatch.setattr(registry, "get", lambda name: rt)
    art = rt.compile(onnx_path, tmp_path / "w", precision="fp16")
    out = write_bundle(tmp_path / "bundle", onnx_path, runtime={"name": "tensorrt", "version": rt.version(),
                                                                 "precision": "fp16"},
                       artifact=art, class_names=["a", "b"])
    manifest = read_manifest(out)
    assert manifest["artifact"]["gpu_name"] == "Orin"  # was null: the writer read 'gpu'/'device_name'
    cuda = cuda_runtime.get_cuda()
    monkeypatch.setattr(cuda, "device_info", lambda device=0: ("Xavier", "7.2"))
    with pytest.raises(IncompatibleArtifactError, match="built on GPU 'Orin', this machine has 'Xavier'"):
        load_bundle(out)
