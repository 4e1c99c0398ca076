"""Stand-ins for TensorRT, pycuda and libcudart, so the TensorRT backend's logic runs without a GPU.

"Device memory" is real host memory (ctypes buffers), so copies really move bytes and the fake engine
really computes (output = 2 * input). The fakes enforce what the real stack enforces where it matters
here: TensorRT calls need a CUDA context current *on the calling thread*, and pycuda contexts pushed
on a thread must be popped on it. They record what the builders were asked for, so a test can compare
the Python builder with the trtexec command line.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import sys
import threading
import types
from pathlib import Path

import numpy as np

# per-thread "current CUDA context": a device number, or None
_TLS = threading.local()


def current_device():
    stack = getattr(_TLS, "stack", None)
    if stack:
        return stack[-1]
    return getattr(_TLS, "device", None)


class Memory:
    """Allocations by address; freed ones are gone (a use after free raises)."""

    def __init__(self) -> None:
        self.blocks: dict[int, ctypes.Array] = {}
        self.lock = threading.Lock()

    def alloc(self, n: int) -> int:
        buf = ctypes.create_string_buffer(max(1, n))
        with self.lock:
            self.blocks[ctypes.addressof(buf)] = buf
        return ctypes.addressof(buf)

    def free(self, addr: int) -> None:
        with self.lock:
            del self.blocks[addr]  # KeyError: double free

    def copy(self, dst: int, src: int, n: int) -> None:
        ctypes.memmove(dst, src, n)


MEM = Memory()


# --- libcudart ------------------------------------------------------------------------------------
class _Fn:
    def __init__(self, fn) -> None:
        self.fn, self.argtypes, self.restype = fn, None, None

    def __call__(self, *args):
        return self.fn(*args)


def _val(x):
    if hasattr(x, "_obj"):  # a ctypes.byref(...) argument
        x = x._obj
    return x.value if hasattr(x, "value") else x


class FakeCudart:
    """The libcudart functions ``CudartApi`` calls, with ctypes arguments as ctypes passes them."""

    def __init__(self, name: bytes = b"Orin", cc=(8, 7), devices: int = 1) -> None:
        self.name, self.cc, self.devices = name, cc, devices
        self.calls: list[tuple[str, int]] = []  # (function, thread id)
        self.streams: set[int] = set()
        self.pinned: set[int] = set()
        for fname in ("cudaGetDeviceCount", "cudaSetDevice", "cudaGetDevice", "cudaDeviceGetAttribute",
                      "cudaGetDeviceProperties", "cudaStreamCreate", "cudaStreamSynchronize",
                      "cudaStreamDestroy", "cudaMalloc", "cudaFree", "cudaMallocHost", "cudaFreeHost",
                      "cudaMemcpyAsync", "cudaRuntimeGetVersion", "cudaDriverGetVersion",
                      "cudaGetErrorString"):
            setattr(self, fname, _Fn(self._logged(fname, getattr(self, "_" + fname))))

    def _logged(self, name, fn):
        def call(*args):
            self.calls.append((name, threading.get_ident()))
            return fn(*args)
        return call

    def _cudaGetErrorString(self, code):
        return {101: b"invalid device ordinal", 2: b"out of memory"}.get(code, b"unknown error")

    def _cudaGetDeviceCount(self, out):
        out._obj.value = self.devices
        return 0

    def _cudaSetDevice(self, dev):
        if not 0 <= dev < self.devices:
            return 101
        _TLS.device = dev
        return 0

    def _cudaGetDevice(self, out):
        out._obj.value = getattr(_TLS, "device", 0)
        return 0

    def _cudaDeviceGetAttribute(self, out, attr, dev):
        if not 0 <= dev < self.devices:
            return 101
        out._obj.value = {75: self.cc[0], 76: self.cc[1]}[attr]
        return 0

    def _cudaGetDeviceProperties(self, prop, dev):
        if not 0 <= dev < self.devices:
            return 101
        ctypes.memmove(prop, self.name + b"\0", len(self.name) + 1)
        return 0

    def _cudaStreamCreate(self, out):
        addr = MEM.alloc(8)
        self.streams.add(addr)
        out._obj.value = addr
        return 0

    def _cudaStreamSynchronize(self, s):
        return 0 if _val(s) in self.streams else 400

    def _cudaStreamDestroy(self, s):
        self.streams.discard(_val(s))
        MEM.free(_val(s))
        return 0

    def _cudaMalloc(self, out, n):
        out._obj.value = MEM.alloc(n)
        return 0

    def _cudaFree(self, p):
        MEM.free(_val(p))
        return 0

    def _cudaMallocHost(self, out, n):
        addr = MEM.alloc(n)
        self.pinned.add(addr)
        out._obj.value = addr
        return 0

    def _cudaFreeHost(self, p):
        self.pinned.discard(_val(p))
        MEM.free(_val(p))
        return 0

    def _cudaMemcpyAsync(self, dst, src, n, kind, stream):
        if kind not in (1, 2):
            return 21
        MEM.copy(_val(dst), _val(src), _val(n))
        return 0

    def _cudaRuntimeGetVersion(self, out):
        out._obj.value = 11040
        return 0

    def _cudaDriverGetVersion(self, out):
        out._obj.value = 11040
        return 0


# --- pycuda ---------------------------------------------------------------------------------------
def make_pycuda(name: str = "Orin", cc=(8, 7)) -> types.ModuleType:
    """A ``pycuda.driver`` stand-in; contexts push/pop on a per-thread stack like the real one."""
    drv = types.ModuleType("pycuda.driver")
    drv.pushes = []

    class Context:
        def __init__(self, dev: int) -> None:
            self.dev = dev

        def push(self) -> None:
            if not hasattr(_TLS, "stack"):
                _TLS.stack = []
            _TLS.stack.append(self.dev)
            drv.pushes.append(threading.get_ident())

        def pop(self) -> None:
            _TLS.stack.pop()

    class Device:
        def __init__(self, i: int) -> None:
            self.i = i

        def name(self) -> str:
            return name

        def compute_capability(self):
            return cc

        def retain_primary_context(self):
            return Context(self.i)

    class Stream:
        def __init__(self) -> None:
            self.handle = MEM.alloc(8)

        def synchronize(self) -> None:
            return None

    class Alloc:
        def __init__(self, n: int) -> None:
            self.addr = MEM.alloc(n)

        def __int__(self) -> int:
            return self.addr

        def free(self) -> None:
            MEM.free(self.addr)

    def memcpy_htod_async(dev, host, stream):
        MEM.copy(int(dev), host.ctypes.data, host.nbytes)

    def memcpy_dtoh_async(host, dev, stream):
        MEM.copy(host.ctypes.data, int(dev), host.nbytes)

    drv.init = lambda: None
    drv.Device, drv.Context, drv.Stream = Device, Context, Stream
    drv.mem_alloc = Alloc
    drv.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    return drv


# --- TensorRT -------------------------------------------------------------------------------------
class _Enum:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"DataType.{self.name}"

    def __int__(self) -> int:
        return 0


def engine_bytes(flags: dict, io=None) -> bytes:
    """What a fake build writes: the settings that decide the engine, and its I/O."""
    io = io or [["images", "INPUT", [1, 3, 8, 8], "FLOAT"], ["output", "OUTPUT", [1, 3, 8, 8], "FLOAT"]]
    return b"FAKEPLAN" + json.dumps({"build": flags, "io": io}, sort_keys=True).encode()


def make_tensorrt(version: str = "8.5.2.2", io=None, compute=None, dla_cores: int = 0) -> types.ModuleType:
    """A ``tensorrt`` stand-in with the builder, calibrator and runtime surface the backend uses.
    ``compute(x) -> y`` is what engines calculate (default 2 * x); ``io`` their tensors."""
    compute = compute or (lambda x: 2 * x)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.loggers = []
    trt.builds = []

    class Logger:
        WARNING = 2

        def __init__(self, level) -> None:
            trt.loggers.append(self)

    class DataType:
        FLOAT, HALF, INT8, INT32, BOOL, UINT8, BF16 = (_Enum(n) for n in
                                                       ("FLOAT", "HALF", "INT8", "INT32", "BOOL", "UINT8",
                                                        "BF16"))

    def nptype(dt):  # TensorRT 8.5 builds a table holding np.bool, gone from numpy 1.24 to 1.26
        raise AttributeError("module 'numpy' has no attribute 'bool'")

    class TensorIOMode:
        INPUT, OUTPUT = "INPUT", "OUTPUT"

    class BuilderFlag:
        FP16, INT8, GPU_FALLBACK = "FP16", "INT8", "GPU_FALLBACK"

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class DeviceType:
        GPU, DLA = "GPU", "DLA"

    class NetworkDefinitionCreationFlag:
        EXPLICIT_BATCH = 0

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    class Network:
        num_inputs = 1

        def get_input(self, i):
            return types.SimpleNamespace(name="images", shape=(1, 3, 8, 8))

    class Parser:
        def __init__(self, network, logger) -> None:
            assert isinstance(logger, Logger)
            self.num_errors = 0

        def parse(self, data: bytes) -> bool:
            return len(data) > 0

    class TimingCache:
        def serialize(self):
            return b"TIMING"

    class Config:
        def __init__(self) -> None:
            self.flags, self.default_device_type, self.DLA_core = set(), "GPU", None
            self.int8_calibrator, self.pool, self.cache = None, None, None

        def set_memory_pool_limit(self, pool, size) -> None:
            self.pool = size

        def set_flag(self, flag) -> None:
            self.flags.add(flag)

        def create_timing_cache(self, data):
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch) -> None:
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger) -> None:
            assert isinstance(logger, Logger)

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            raise AssertionError("static shapes only in the fake")

        def build_serialized_network(self, network, config):
            assert current_device() is not None, "TensorRT build without a current CUDA context"
            calibration = None
            if "INT8" in config.flags:
                calib = config.int8_calibrator
                cache = calib.read_calibration_cache()
                if cache is None:  # calibrate: consume the batches, then hand over the cache
                    h = hashlib.sha256()
                    while True:
                        batch = calib.get_batch(["images"])
                        if batch is None:
                            break
                        h.update(repr(batch).encode())
                    cache = b"TRT-8502-EntropyCalibration2\n" + h.hexdigest().encode()
                    calib.write_calibration_cache(cache)
                calibration = hashlib.sha256(bytes(cache)).hexdigest()
            flags = {
                "fp16": "FP16" in config.flags,
                "int8": "INT8" in config.flags,
                "dla_core": config.DLA_core if config.default_device_type == "DLA" else None,
                "gpu_fallback": "GPU_FALLBACK" in config.flags,
                "workspace_mib": config.pool >> 20,
                "calibration": calibration,
            }
            trt.builds.append(flags)
            return engine_bytes(flags, io)

    class Context:
        def __init__(self, engine) -> None:
            self.engine, self.addresses = engine, {}

        def set_input_shape(self, name, shape) -> None:
            pass

        def get_tensor_shape(self, name):
            return tuple(self.engine.tensors[name][1])

        def set_tensor_address(self, name, addr) -> None:
            self.addresses[name] = int(addr)

        def execute_async_v3(self, stream_handle) -> bool:
            if current_device() is None:  # the real one fails: no CUDA context on this thread
                return False
            (iname,) = [n for n, t in self.engine.tensors.items() if t[0] == "INPUT"]
            (oname,) = [n for n, t in self.engine.tensors.items() if t[0] == "OUTPUT"]
            shape = self.engine.tensors[iname][1]
            n = int(np.prod(shape))
            x = np.frombuffer((ctypes.c_float * n).from_address(self.addresses[iname]), np.float32)
            y = np.ascontiguousarray(compute(x.reshape(shape)), dtype=np.float32)
            assert list(y.shape) == list(self.engine.tensors[oname][1])
            ctypes.memmove(self.addresses[oname], y.ctypes.data, y.nbytes)
            return True

    class Engine:
        def __init__(self, data: bytes) -> None:
            info = json.loads(data[len(b"FAKEPLAN"):])
            self.build = info["build"]
            self.tensors = {n: (mode, shape, dt) for n, mode, shape, dt in info["io"]}
            self.names = [t[0] for t in info["io"]]
            self.num_io_tensors = len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return self.tensors[name][0]

        def get_tensor_shape(self, name):
            return tuple(self.tensors[name][1])

        def get_tensor_dtype(self, name):
            return getattr(DataType, self.tensors[name][2])

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger) -> None:
            assert isinstance(logger, Logger)
            self.DLA_core = None

        def deserialize_cuda_engine(self, data: bytes):
            assert current_device() is not None, "deserialize without a current CUDA context"
            return Engine(data) if data.startswith(b"FAKEPLAN") else None

    for obj in (Logger, DataType, TensorIOMode, BuilderFlag, MemoryPoolType, DeviceType,
                NetworkDefinitionCreationFlag, IInt8EntropyCalibrator2, Builder, Runtime):
        setattr(trt, obj.__name__, obj)
    trt.OnnxParser, trt.nptype = Parser, nptype
    return trt


FAKE_TRTEXEC = r'''#!PYTHON
"""A trtexec stand-in: parses the flags the backend passes and saves the engine the fake builder would
make for them (TensorRT 8.5's rules: DLA without --fp16/--int8 turns fp16 on; --int8 without --calib
uses placeholder ranges)."""
import hashlib, json, os, sys
args = dict(a[2:].split("=", 1) if "=" in a else (a[2:], True) for a in sys.argv[1:])
with open(sys.argv[0] + ".calls", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
if "loadEngine" in args:  # timing run: a TensorRT 10.3-style summary and per-run times
    if "exportTimes" in args:
        json.dump([{"latencyMs": 1.3, "computeMs": 1.1}, {"latencyMs": 1.4, "computeMs": 1.2}],
                  open(args["exportTimes"], "w"))
    print("[I] === Performance summary ===")
    print("[I] Latency: min = 1.2 ms, max = 1.5 ms, mean = 1.3 ms, median = 1.3 ms, percentile(90%) = 1.4 ms")
    print("[I] GPU Compute Time: min = 1.0 ms, max = 1.3 ms, mean = 1.1 ms, median = 1.1 ms")
    print("&&&& PASSED TensorRT.trtexec [TensorRT v8502]")
    sys.exit(0)
dla = int(args["useDLACore"]) if "useDLACore" in args else None
fp16 = "fp16" in args or (dla is not None and "int8" not in args)
calib = hashlib.sha256(open(args["calib"], "rb").read()).hexdigest() if "calib" in args else (
    "placeholder" if "int8" in args else None)
ws = args["memPoolSize"].split(":")[1].rstrip("M")
flags = {"fp16": fp16 or "int8" in args, "int8": "int8" in args, "dla_core": dla,
         "gpu_fallback": "allowGPUFallback" in args, "workspace_mib": int(ws), "calibration": calib}
io = [["images", "INPUT", [1, 3, 8, 8], "FLOAT"], ["output", "OUTPUT", [1, 3, 8, 8], "FLOAT"]]
if os.path.exists(sys.argv[0] + ".io.json"):
    io = json.load(open(sys.argv[0] + ".io.json"))
plan = b"FAKEPLAN" + json.dumps({"build": flags, "io": io}, sort_keys=True).encode()
open(args["saveEngine"], "wb").write(plan)
print("&&&& PASSED TensorRT.trtexec [TensorRT v8502]")
'''


def write_fake_trtexec(folder: Path, io=None) -> Path:
    """An executable ``trtexec`` in ``folder`` (run by this Python); ``io``: the engines' tensors."""
    path = folder / "trtexec"
    path.write_text(FAKE_TRTEXEC.replace("PYTHON", sys.executable, 1))
    path.chmod(0o755)
    if io is not None:
        Path(str(path) + ".io.json").write_text(json.dumps(io))
    return path


def calls_of(trtexec: Path) -> list:
    p = Path(str(trtexec) + ".calls")
    return [json.loads(line) for line in p.read_text().splitlines()] if p.is_file() else []
