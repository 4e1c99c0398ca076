"""The few CUDA calls the TensorRT backend needs, through pycuda when installed, else through the CUDA
runtime library itself (``libcudart``, present on every JetPack and beside every TensorRT install).

JetPack ships no pycuda and building it needs nvcc, so the ctypes path is what a bare device uses.
Both paths share one small interface (``CudaApi``) and one threading rule: ``with api.current(device):``
makes the device's *primary* context current on the calling thread for the duration of one call and
leaves the thread's context stack as it found it. A session is then usable from any thread (an OpenCV
capture thread), and a thread that ends without ``close()`` leaves nothing pushed behind.

Choose a path with ``EDGEPRUNE_CUDA=pycuda|cudart`` (default: pycuda when importable, else cudart).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import glob
import os
import threading
from typing import Any, Iterator

import numpy as np

from edgeprune.errors import CompileError, InvalidConfigError, MissingDependencyError

# cudaMemcpyKind and cudaDeviceAttr values (CUDA runtime API headers, unchanged from CUDA 10 to 12)
_H2D, _D2H = 1, 2
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76
_PROP_BYTES = 4096  # cudaDeviceProp is ~1 KiB in CUDA 12; ``name`` (char[256]) is its first field in all
CUDART_NAMES = ("libcudart.so", "libcudart.so.12", "libcudart.so.11.0", "libcudart.so.10.2")
CUDART_GLOBS = (
    "/usr/local/cuda/lib64/libcudart.so*",
    "/usr/local/cuda-*/lib64/libcudart.so*",
    "/usr/local/cuda/targets/*/lib/libcudart.so*",
    "/usr/lib/aarch64-linux-gnu/libcudart.so*",
    "/usr/lib/x86_64-linux-gnu/libcudart.so*",
)


# cudaErrorInsufficientDriver, cudaErrorNoDevice: the library loaded but there is no usable GPU here
NO_DEVICE_CODES = (35, 100)


class NoCudaDeviceError(CompileError):
    """libcudart loaded, but no GPU (or no driver) is usable on this machine."""


class CudaApi:
    """What the TensorRT backend asks of CUDA; ``name`` says which path answers ("pycuda" or "cudart")."""

    name = "none"

    def device_info(self, device: int = 0) -> tuple[str, str]:
        """(GPU name, compute capability "major.minor")."""
        raise NotImplementedError

    def current(self, device: int = 0):
        """Context manager: the device's primary context is current on this thread inside it."""
        raise NotImplementedError

    def stream_create(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        raise NotImplementedError

    def stream_synchronize(self, stream: Any) -> None:
        raise NotImplementedError

    def stream_destroy(self, stream: Any) -> None:
        raise NotImplementedError

    def malloc(self, nbytes: int) -> Any:
        """Device memory of at least ``nbytes``; ``int(ptr)`` is its address."""
        raise NotImplementedError

    def free(self, ptr: Any) -> None:
        raise NotImplementedError

    def host_empty(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """A page-locked host array (fast, truly asynchronous copies)."""
        raise NotImplementedError

    def host_free(self, array: np.ndarray) -> None:
        raise NotImplementedError

    def copy_htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        raise NotImplementedError

    def copy_dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        raise NotImplementedError

    def versions(self) -> dict:
        """Versions of what this path talks to (for the environment record)."""
        return {"cuda_path": self.name}


class PycudaApi(CudaApi):
    """pycuda: the device's primary context is pushed and popped around every call."""

    name = "pycuda"

    def __init__(self, driver: Any) -> None:
        self.cuda = driver
        self.cuda.init()
        self._contexts: dict = {}
        self._lock = threading.Lock()

    def _context(self, device: int):
        with self._lock:
            if device not in self._contexts:
                self._contexts[device] = self.cuda.Device(device).retain_primary_context()
            return self._contexts[device]

    def device_info(self, device: int = 0) -> tuple[str, str]:
        d = self.cuda.Device(device)
        major, minor = d.compute_capability()
        return str(d.name()), f"{major}.{minor}"

    @contextlib.contextmanager
    def current(self, device: int = 0) -> Iterator[None]:
        ctx = self._context(device)
        ctx.push()
        try:
            yield
        finally:
            ctx.pop()  # pops what we pushed on this thread: the stack is as it was

    def stream_create(self) -> Any:
        return self.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        return None  # pycuda frees a stream with its object

    def malloc(self, nbytes: int) -> Any:
        return self.cuda.mem_alloc(max(1, int(nbytes)))

    def free(self, ptr: Any) -> None:
        ptr.free()

    def host_empty(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def host_free(self, array: np.ndarray) -> None:
        base = getattr(array, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def copy_htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        self.cuda.memcpy_htod_async(dst, src, stream)

    def copy_dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(dst, src, stream)

    def versions(self) -> dict:
        v = self.cuda.get_version() if hasattr(self.cuda, "get_version") else None
        drv = self.cuda.get_driver_version() if hasattr(self.cuda, "get_driver_version") else None
        return {"cuda_path": self.name, "cuda_build_version": v, "cuda_driver_version": drv}


def _ref(obj: Any) -> Any:
    return ctypes.byref(obj)


class CudartApi(CudaApi):
    """The CUDA runtime library through ctypes. ``cudaSetDevice`` per call binds the device's primary
    context to the calling thread (the runtime API's own per-thread model): nothing is pushed, so
    nothing is left behind when a thread ends."""

    name = "cudart"

    def __init__(self, lib: Any, path: str = "") -> None:
        self.lib, self.path = lib, path
        vp, sz, i = ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int
        sigs = {
            "cudaGetDeviceCount": [ctypes.POINTER(i)],
            "cudaSetDevice": [i],
            "cudaGetDevice": [ctypes.POINTER(i)],
            "cudaDeviceGetAttribute": [ctypes.POINTER(i), i, i],
            "cudaStreamCreate": [ctypes.POINTER(vp)],
            "cudaStreamSynchronize": [vp],
            "cudaStreamDestroy": [vp],
            "cudaMalloc": [ctypes.POINTER(vp), sz],
            "cudaFree": [vp],
            "cudaMallocHost": [ctypes.POINTER(vp), sz],
            "cudaFreeHost": [vp],
            "cudaMemcpyAsync": [vp, vp, sz, i, vp],
            "cudaRuntimeGetVersion": [ctypes.POINTER(i)],
            "cudaDriverGetVersion": [ctypes.POINTER(i)],
        }
        for fname, args in sigs.items():
            fn = getattr(lib, fname)
            fn.argtypes, fn.restype = args, i
        lib.cudaGetErrorString.argtypes, lib.cudaGetErrorString.restype = [i], ctypes.c_char_p
        try:  # CUDA 12+ headers map cudaGetDeviceProperties to _v2 (a larger struct; ``name`` still first)
            self._props = lib.cudaGetDeviceProperties_v2
        except AttributeError:
            self._props = lib.cudaGetDeviceProperties
        self._props.argtypes, self._props.restype = [ctypes.c_char_p, i], i
        self._pinned: dict = {}  # id(array) -> host pointer, for cudaFreeHost

    def check(self, code: int, what: str) -> None:
        """Raise a CompileError naming the CUDA call and its error string."""
        if code:
            msg = self.lib.cudaGetErrorString(code)
            text = msg.decode() if isinstance(msg, bytes) else str(msg)
            cls = NoCudaDeviceError if code in NO_DEVICE_CODES else CompileError
            raise cls(f"CUDA {what} failed: error {code} ({text})")

    def device_count(self) -> int:
        n = ctypes.c_int(0)
        self.check(self.lib.cudaGetDeviceCount(_ref(n)), "cudaGetDeviceCount")
        return n.value

    def device_info(self, device: int = 0) -> tuple[str, str]:
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        for out, attr in ((major, _ATTR_CC_MAJOR), (minor, _ATTR_CC_MINOR)):
            code = self.lib.cudaDeviceGetAttribute(_ref(out), attr, int(device))
            self.check(code, "cudaDeviceGetAttribute")
        prop = ctypes.create_string_buffer(_PROP_BYTES)
        self.check(self._props(prop, int(device)), "cudaGetDeviceProperties")
        return prop.raw[:256].split(b"\0", 1)[0].decode("utf-8", "replace"), f"{major.value}.{minor.value}"

    @contextlib.contextmanager
    def current(self, device: int = 0) -> Iterator[None]:
        self.check(self.lib.cudaSetDevice(int(device)), "cudaSetDevice")
        yield

    def stream_create(self) -> Any:
        s = ctypes.c_void_p()
        self.check(self.lib.cudaStreamCreate(_ref(s)), "cudaStreamCreate")
        return s

    def stream_handle(self, stream: Any) -> int:
        return int(stream.value or 0)

    def stream_synchronize(self, stream: Any) -> None:
        self.check(self.lib.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        self.check(self.lib.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def malloc(self, nbytes: int) -> Any:
        p = ctypes.c_void_p()
        self.check(self.lib.cudaMalloc(_ref(p), max(1, int(nbytes))), "cudaMalloc")
        return _DevicePtr(p.value or 0)

    def free(self, ptr: Any) -> None:
        self.check(self.lib.cudaFree(ctypes.c_void_p(int(ptr))), "cudaFree")

    def host_empty(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        dtype, count = np.dtype(dtype), int(np.prod(shape, dtype=np.int64))
        nbytes = max(1, count * dtype.itemsize)
        p = ctypes.c_void_p()
        self.check(self.lib.cudaMallocHost(_ref(p), nbytes), "cudaMallocHost")
        buf = (ctypes.c_ubyte * nbytes).from_address(p.value)
        arr = np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)
        self._pinned[id(arr)] = p.value
        return arr

    def host_free(self, array: np.ndarray) -> None:
        ptr = self._pinned.pop(id(array), None)
        if ptr is not None:
            self.check(self.lib.cudaFreeHost(ctypes.c_void_p(ptr)), "cudaFreeHost")

    def copy_htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        src = np.ascontiguousarray(src)
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(int(dst)), ctypes.c_void_p(src.ctypes.data),
                                            src.nbytes, _H2D, stream), "cudaMemcpyAsync (host to device)")

    def copy_dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        if not dst.flags.c_contiguous:
            raise InvalidConfigError("copy_dtoh_async needs a C-contiguous host array")
        self.check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst.ctypes.data), ctypes.c_void_p(int(src)),
                                            dst.nbytes, _D2H, stream), "cudaMemcpyAsync (device to host)")

    def versions(self) -> dict:
        rt, drv = ctypes.c_int(0), ctypes.c_int(0)
        self.lib.cudaRuntimeGetVersion(_ref(rt))
        self.lib.cudaDriverGetVersion(_ref(drv))
        return {"cuda_path": self.name, "cudart": self.path, "cuda_runtime_version": _cuda_version(rt.value),
                "cuda_driver_version": _cuda_version(drv.value)}


class _DevicePtr(int):
    """A device address (an int, as TensorRT's ``set_tensor_address`` wants)."""


def _cuda_version(v: int) -> str | None:
    return f"{v // 1000}.{v % 1000 // 10}" if v else None


def find_cudart() -> str | None:
    """Path (or soname) of the CUDA runtime library: EDGEPRUNE_CUDART, the loader, then JetPack places."""
    env = os.environ.get("EDGEPRUNE_CUDART")
    if env:
        return env
    found = ctypes.util.find_library("cudart")
    if found:
        return found
    for pattern in CUDART_GLOBS:
        hits = sorted(glob.glob(pattern))
        if hits:
            return hits[0]
    return None


def load_cudart() -> CudartApi:
    """The ctypes path, or MissingDependencyError saying where libcudart was looked for."""
    tried = []
    first = find_cudart()
    for name in ([first] if first else []) + list(CUDART_NAMES):
        try:
            return CudartApi(ctypes.CDLL(name), name)
        except OSError as exc:
            tried.append(f"{name}: {exc}")
    raise MissingDependencyError(
        "CUDA runtime (libcudart)", "tensorrt",
        "neither pycuda nor libcudart was found; on a Jetson install JetPack's CUDA (or set EDGEPRUNE_CUDART "
        "to the library's path)",
    )


_API: dict = {}
_API_LOCK = threading.Lock()


def get_cuda(prefer: str | None = None) -> CudaApi:
    """The CUDA path to use (cached per process): ``prefer`` or EDGEPRUNE_CUDA, else pycuda, else cudart."""
    choice = (prefer or os.environ.get("EDGEPRUNE_CUDA") or "auto").lower()
    if choice not in ("auto", "pycuda", "cudart"):
        raise InvalidConfigError(f"EDGEPRUNE_CUDA must be 'pycuda' or 'cudart', got {choice!r}")
    with _API_LOCK:
        if choice not in _API:
            _API[choice] = _make(choice)
        return _API[choice]


def _make(choice: str) -> CudaApi:
    if choice in ("auto", "pycuda"):
        try:
            import pycuda.driver as driver
        except ImportError:
            if choice == "pycuda":
                raise MissingDependencyError("pycuda", "pycuda") from None
        else:
            return PycudaApi(driver)
    return load_cudart()


def reset() -> None:
    """Forget the chosen CUDA path (tests swap in fakes)."""
    with _API_LOCK:
        _API.clear()
