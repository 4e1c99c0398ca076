"""The CUDA helper on its own: the ctypes (libcudart) path and the pycuda path, with stand-ins."""

from __future__ import annotations

import ctypes
import sys
import threading

import numpy as np
import pytest
import trt_fakes as fk

from edgeprune.errors import CompileError, InvalidConfigError, MissingDependencyError
from edgeprune.runtimes import cuda_runtime as cr


def test_cudart_path_moves_bytes_through_pinned_and_device_memory():
    lib = fk.FakeCudart(name=b"NVIDIA Jetson AGX Orin", cc=(8, 7))
    api = cr.CudartApi(lib, "fake")
    assert api.device_info(0) == ("NVIDIA Jetson AGX Orin", "8.7") and api.device_count() == 1
    with api.current(0):
        s = api.stream_create()
        host = api.host_empty((2, 3), np.float16)
        assert host.shape == (2, 3) and host.dtype == np.float16 and host.ctypes.data in lib.pinned
        host[:] = np.arange(6).reshape(2, 3)
        dev = api.malloc(host.nbytes)
        api.copy_htod_async(dev, host, s)
        back = api.host_empty((2, 3), np.float16)
        api.copy_dtoh_async(back, dev, s)
        api.stream_synchronize(s)
        np.testing.assert_array_equal(back, host)
        api.free(dev)
        api.host_free(host)
        api.host_free(back)
        api.stream_destroy(s)
    assert not lib.pinned and not lib.streams
    assert api.versions()["cuda_runtime_version"] == "11.4"
    called = {name for name, _ in lib.calls}
    assert {"cudaMallocHost", "cudaMemcpyAsync", "cudaStreamCreate", "cudaSetDevice"} <= called


def test_cudart_errors_name_the_call_and_cuda_message():
    api = cr.CudartApi(fk.FakeCudart(devices=1))
    with pytest.raises(CompileError, match=r"cudaSetDevice failed: error 101 \(invalid device ordinal\)"):
        with api.current(3):
            pass
    with pytest.raises(CompileError, match="cudaDeviceGetAttribute failed: error 101"):
        api.device_info(2)


def test_cudart_sets_the_device_on_each_calling_thread():
    lib = fk.FakeCudart()
    api = cr.CudartApi(lib)
    threads = []
    for _ in range(2):
        t = threading.Thread(target=lambda: api.current(0).__enter__())
        t.start()
        t.join()
        threads.append(t.ident)
    assert [tid for name, tid in lib.calls if name == "cudaSetDevice"] == threads


def test_pycuda_path_pushes_and_pops_on_the_calling_thread():
    drv = fk.make_pycuda(name="Xavier", cc=(7, 2))
    api = cr.PycudaApi(drv)
    assert api.device_info(0) == ("Xavier", "7.2")
    with api.current(0):
        assert fk.current_device() == 0
        dev = api.malloc(16)
        host = api.host_empty((4,), np.float32)
        host[:] = [1, 2, 3, 4]
        s = api.stream_create()
        api.copy_htod_async(dev, host, s)
        out = np.zeros(4, np.float32)
        api.copy_dtoh_async(out, dev, s)
        api.stream_synchronize(s)
        api.free(dev)
    assert getattr(fk._TLS, "stack", []) == []  # popped: this thread's stack is as it was
    np.testing.assert_array_equal(out, host)


def test_choice_of_path(monkeypatch):
    cr.reset()
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setenv("EDGEPRUNE_CUDA", "pycuda")
    with pytest.raises(MissingDependencyError, match="pycuda"):
        cr.get_cuda()
    monkeypatch.setenv("EDGEPRUNE_CUDA", "opencl")
    with pytest.raises(InvalidConfigError, match="EDGEPRUNE_CUDA"):
        cr.get_cuda()
    monkeypatch.setenv("EDGEPRUNE_CUDA", "cudart")
    monkeypatch.setattr(cr, "load_cudart", lambda: cr.CudartApi(fk.FakeCudart()))
    assert cr.get_cuda().name == "cudart" and cr.get_cuda() is cr.get_cuda()
    cr.reset()


def test_missing_libcudart_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CUDART", "/nonexistent/libcudart.so")

    def no_lib(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", no_lib)
    with pytest.raises(MissingDependencyError, match="libcudart"):
        cr.load_cudart()


def test_find_cudart_honours_the_environment(monkeypatch):
    monkeypatch.setenv("EDGEPRUNE_CUDART", "/opt/cuda/libcudart.so.12")
    assert cr.find_cudart() == "/opt/cuda/libcudart.so.12"


@pytest.mark.skipif(cr.find_cudart() is None, reason="no libcudart on this machine")
def test_real_libcudart_loads_with_our_signatures():
    """Where a real CUDA runtime library exists, every symbol we bind is present and callable; without a
    GPU it answers with NoCudaDeviceError (a fact, not a failure)."""
    api = cr.load_cudart()
    assert api.versions()["cuda_runtime_version"]  # e.g. "12.6" on JetPack 6, "11.4" on JetPack 5
    try:
        name, cc = api.device_info(0)
    except cr.NoCudaDeviceError:
        return
    assert name and cc.count(".") == 1
