"""TensorRT backend (TensorRT 8.5 / JetPack 5.1 through 10.x; name-based tensor I/O).

Build: the Python builder (default) or ``trtexec`` (``builder="trtexec"``), from the same options
(``TrtBuildOptions``: precision, workspace_mib, dla_core + gpu_fallback, timing_cache, shapes, ...).
The engine is a plain serialized plan (``trtexec --loadEngine`` can load it) named by a cache key of
ONNX sha256, TensorRT version, GPU name, compute capability, precision and options; its sidecar
``<engine>.json`` holds the key fields. A matching engine is reused, anything else is rebuilt, and a
session refuses an engine whose sidecar names another TensorRT version, GPU or build.
Both builders get the same settings, so a key means one engine whichever built it: INT8 always
calibrates from ``int8_calibration_cache`` (keyed by its content; the Python builder's ``calibrator=``
writes it on the first build, trtexec only reads it), DLA at fp32 builds fp16 (as trtexec does), and
int8 enables fp16 fallback in both.
Run: CUDA through pycuda or, without it, libcudart via ctypes (``cuda_runtime``): page-locked host
buffers, device buffers, one stream, ``execute_async_v3``; usable from any thread.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import CompileError, IncompatibleArtifactError, InvalidInputError
from edgeprune.fileio import atomic_write_bytes, write_json
from edgeprune.runtimes import registry, trtexec
from edgeprune.runtimes import tensorrt_options as to
from edgeprune.runtimes.base import GPU_NAME, Artifact, CompileJob, Runtime, Session, TensorSpec
from edgeprune.runtimes.cuda_runtime import get_cuda

_trt = functools.partial(registry.import_sdk, "tensorrt")  # the SDK, for module-level helpers


_LOGGERS: dict = {}
_LOGGER_LOCK = threading.Lock()


def trt_logger(trt):
    """The one ``trt.Logger`` of this process, shared by builders and runtimes (TensorRT expects one)."""
    with _LOGGER_LOCK:
        if id(trt) not in _LOGGERS:
            _LOGGERS[id(trt)] = trt.Logger(trt.Logger.WARNING)
        return _LOGGERS[id(trt)]


# TensorRT DataType name -> numpy dtype. Our own table: ``trt.nptype`` of TensorRT 8.5 returns ``np.bool``,
# removed in numpy 1.24, so it raises AttributeError there for every tensor.
TRT_TO_NUMPY = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """numpy dtype of a TensorRT ``DataType``; FP8/BF16/INT4 tensors at the I/O are refused by name."""
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in TRT_TO_NUMPY:
        raise CompileError(
            f"engine I/O tensor of TensorRT type {name} has no numpy equivalent; export the model with "
            f"float32/float16 inputs and outputs (supported: {', '.join(TRT_TO_NUMPY)})"
        )
    return np.dtype(TRT_TO_NUMPY[name])


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device ``device`` (pycuda or libcudart)."""
    return get_cuda().device_info(device)


def current_fields(onnx_sha256: str, options: to.TrtBuildOptions, device: int = 0) -> dict:
    name, cc = gpu_info(device)
    return to.cache_key_fields(onnx_sha256, _trt().__version__, name, cc, options)


def _calibrator_base(trt, calibrator):
    for base in ("IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IInt8EntropyCalibrator"):
        cls = getattr(trt, base, None)
        if cls is not None and isinstance(calibrator, cls):
            return cls
    return None


def make_calibrator(trt, cache_path: str, user=None):
    """The INT8 calibrator a build uses: with a cache file, one that replays it (what ``trtexec --calib``
    does, so both builders make the same engine); else the user's calibrator, with its cache also
    written to ``cache_path`` so later builds (and trtexec) reuse exactly these ranges."""
    if Path(cache_path).is_file() or user is None:
        base, user = trt.IInt8EntropyCalibrator2, None
    else:
        base = _calibrator_base(trt, user)
        if base is None:
            return user  # another calibrator kind: used as is; compile() checks that it wrote the cache

    class Calib(base):
        def __init__(self) -> None:
            base.__init__(self)

        def get_batch_size(self) -> int:
            return user.get_batch_size() if user is not None else 1

        def get_batch(self, names):
            return user.get_batch(names) if user is not None else None

        def read_calibration_cache(self):
            p = Path(cache_path)
            return p.read_bytes() if p.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write_bytes(cache_path, bytes(cache))
            if user is not None:
                user.write_calibration_cache(cache)

    return Calib()


def build_engine(onnx_path: str, opts: to.TrtBuildOptions, calibrator=None) -> bytes:
    """Build a serialized engine with the TensorRT Python API (the same settings trtexec gets)."""
    trt = _trt()
    major = to.parse_version(trt.__version__)[0]
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    # explicit batch is the only mode in 10.x; in 8.x it must be asked for
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise CompileError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mib) << 20)
    if opts.precision in ("fp16", "int8"):  # int8 with fp16 fallback, as the trtexec command gets
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = make_calibrator(trt, str(opts.int8_calibration_cache), calibrator)
    if opts.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = int(opts.dla_core)
        if opts.gpu_fallback:
            config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    if opts.builder_optimization_level is not None and hasattr(config, "builder_optimization_level"):
        config.builder_optimization_level = int(opts.builder_optimization_level)
    dynamic = [
        network.get_input(i) for i in range(network.num_inputs) if -1 in tuple(network.get_input(i).shape)
    ]
    if dynamic:
        profile = builder.create_optimization_profile()
        for t in dynamic:
            if t.name not in opts.shapes:
                raise CompileError(
                    f"input {t.name!r} has a dynamic shape {tuple(t.shape)}; pass shapes={{name: shape}}"
                )
            s = tuple(opts.shapes[t.name])
            profile.set_shape(t.name, s, s, s)
        config.add_optimization_profile(profile)
    cache = None
    if opts.timing_cache:
        tc = Path(opts.timing_cache)
        cache = config.create_timing_cache(tc.read_bytes() if tc.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise CompileError(f"TensorRT failed to build an engine for {onnx_path} (see the TensorRT log above)")
    if cache is not None:
        atomic_write_bytes(opts.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


class TensorRTSession(Session):
    """An engine with its buffers. Every CUDA/TensorRT call runs with the device's primary context current
    on the calling thread (``cuda.current``), so any thread may use or close the session; one lock keeps
    two threads from sharing the execution context at once."""

    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        trt, self.cuda = _trt(), get_cuda()
        self.device = int(artifact.options.get("device", 0))
        build = to.TrtBuildOptions.from_options(artifact.precision, **artifact.options.get("build", {}))
        sidecar = to.read_sidecar(artifact.path)
        current = current_fields(artifact.onnx_sha256, build, self.device)
        to.check_loadable(sidecar or {}, current, artifact.path)
        to.check_same_engine(sidecar or {}, current, artifact.path)
        self._lock = threading.Lock()
        self.stream, self.buffers, self.context, self.engine = None, {}, None, None
        with self.cuda.current(self.device):
            try:
                self._setup(trt, artifact, build)
            except BaseException:
                self._release()
                raise

    def _setup(self, trt, artifact: Artifact, build: to.TrtBuildOptions) -> None:
        cuda = self.cuda
        self.runtime = trt.Runtime(trt_logger(trt))
        if build.dla_core is not None:
            self.runtime.DLA_core = int(build.dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(Path(artifact.path).read_bytes())
        if self.engine is None:
            raise IncompatibleArtifactError(
                f"TensorRT could not deserialize {artifact.path}; {to.REBUILD_HINT}"
            )
        self.context = self.engine.create_execution_context()
        self.stream = cuda.stream_create()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(self.engine.get_tensor_shape(name))
            if is_input and -1 in shape:
                shape = tuple(build.shapes[name])
                self.context.set_input_shape(name, shape)
            dtype = numpy_dtype(self.engine.get_tensor_dtype(name))
            (self.inputs if is_input else self.outputs).append(TensorSpec(name, shape, dtype))
        for spec in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            host = cuda.host_empty(shape, spec.dtype)
            self.buffers[spec.name] = (host, None)
            dev = cuda.malloc(max(1, host.nbytes))
            self.buffers[spec.name] = (host, dev)
            self.context.set_tensor_address(spec.name, int(dev))
        self.outputs = [
            TensorSpec(s.name, tuple(self.buffers[s.name][0].shape), s.dtype) for s in self.outputs
        ]

    def _env_extra(self) -> dict:
        name, cc = gpu_info(self.device)
        return {GPU_NAME: name, "compute_capability": cc, "includes_transfers": True,
                **self.cuda.versions()}

    def _run(self, feeds):
        cuda = self.cuda
        with self._lock, cuda.current(self.device):
            if self.context is None:
                raise InvalidInputError("this TensorRT session is closed")
            s = self.stream
            for spec in self.inputs:
                host, dev = self.buffers[spec.name]
                np.copyto(host, feeds[spec.name])
                cuda.copy_htod_async(dev, host, s)
            if not self.context.execute_async_v3(stream_handle=cuda.stream_handle(s)):
                raise CompileError("TensorRT execute_async_v3 failed")
            for spec in self.outputs:
                host, dev = self.buffers[spec.name]
                cuda.copy_dtoh_async(host, dev, s)
            cuda.stream_synchronize(s)
            return [self.buffers[o.name][0].copy() for o in self.outputs]

    def _release(self) -> None:
        # TensorRT objects go before the memory they point at; all with the context current
        self.context, self.engine = None, None
        for host, dev in self.buffers.values():
            if dev is not None:
                self.cuda.free(dev)
            self.cuda.host_free(host)
        self.buffers = {}
        if self.stream is not None:
            self.cuda.stream_destroy(self.stream)
            self.stream = None

    def _close(self) -> None:
        with self._lock, self.cuda.current(self.device):
            self._release()


class TensorRTRuntime(Runtime):
    """``compile`` takes, besides the build options (``TrtBuildOptions``): ``builder`` ("python" or
    "trtexec"), ``calibrator`` (INT8, Python builder) and ``device`` (CUDA device number); ``threads`` is
    ignored (GPU)."""

    name = "tensorrt"
    precisions = to.TRT_PRECISIONS
    known_options = None  # TrtBuildOptions.from_options names the unknown ones
    RUN_OPTIONS = ("builder", "calibrator", "device")

    def _check(self, trt: Any, job: CompileJob) -> None:
        build_opts = {k: v for k, v in job.requested.items() if k not in self.RUN_OPTIONS}
        build = to.TrtBuildOptions.from_options(job.precision, **build_opts)  # DLA: fp32 becomes fp16
        builder = job.requested.get("builder", "python")
        if builder not in ("python", "trtexec"):
            raise CompileError(f"builder must be 'python' or 'trtexec', got {builder!r}")
        to.check_int8_inputs(build, builder, job.requested.get("calibrator") is not None)
        if build.precision != job.precision:
            job.meta["precision_note"] = (f"DLA runs fp16/int8 only: {job.precision} was built as "
                                          f"{build.precision}")
            job.precision = build.precision
        job.options = {
            "threads": None,
            "device": job.requested.get("device", 0),
            "builder": builder,
            "build": {k: v for k, v in build.__dict__.items() if k != "precision"},
        }

    def _build(self, trt: Any, job: CompileJob) -> tuple[Path, list[Path]]:
        """Build (or reuse a matching cached) engine named by its cache key, with its sidecar."""
        build = to.TrtBuildOptions.from_options(job.precision, **job.options["build"])
        builder, device = job.options["builder"], job.options["device"]
        calibrator = job.requested.get("calibrator")
        fields = current_fields(job.onnx_sha256, build, device)
        engine, reusable = to.resolve_engine(job.workdir, fields)
        if not reusable:
            with get_cuda().current(device):
                plan = self._build_engine(job.onnx_path, build, builder, calibrator, engine)
            # a first INT8 build made its calibration cache just now: the key names it by content
            fields = current_fields(job.onnx_sha256, build, device)
            if build.precision == "int8" and fields["options"].get("int8_calibration_sha256") is None:
                raise CompileError(f"the calibrator wrote no cache to {build.int8_calibration_cache}; "
                                   "its write_calibration_cache must save what TensorRT hands it")
            final, _ = to.resolve_engine(job.workdir, fields)
            if plan is not None:
                atomic_write_bytes(final, plan)
            elif final != engine:
                os.replace(engine, final)
            engine = final
            write_json(str(engine) + to.SIDECAR_SUFFIX, to.sidecar_for(fields, {"builder": builder}))
        job.meta.update({
            "cache_hit": reusable,
            "cache_key": to.cache_key(fields),
            GPU_NAME: fields["gpu_name"],
            "compute_capability": fields["compute_capability"],
            "cuda_path": get_cuda().name,
        })
        return engine, [engine, Path(str(engine) + to.SIDECAR_SUFFIX)]

    def _build_engine(self, onnx_path, build: to.TrtBuildOptions, builder: str, calibrator, engine: Path):
        """Serialized engine bytes (Python builder), or None after trtexec saved it to ``engine``."""
        if builder == "python":
            return build_engine(str(onnx_path), build, calibrator)
        cmd = trtexec.build_command(
            self.version(), onnx_path, engine, build, build_only=True, executable=trtexec.find_trtexec()
        )
        trtexec.run(cmd, log_path=str(engine) + ".build.log")
        return None

    def _open(self, artifact: Artifact) -> Session:
        return TensorRTSession(artifact)

    def profile_trtexec(self, artifact: Artifact, run: trtexec.TrtexecRunOptions | None = None):
        """Time the artifact's engine with ``trtexec --loadEngine`` (GPU compute time, per-run samples)."""
        times = str(artifact.path) + ".times.json"
        run = run or trtexec.TrtexecRunOptions()
        run = trtexec.TrtexecRunOptions(**{**run.__dict__, "export_times": times})
        build = to.TrtBuildOptions.from_options(artifact.precision, **artifact.options.get("build", {}))
        cmd = trtexec.build_command(
            self.version(), engine=artifact.path, build=build, run=run, executable=trtexec.find_trtexec()
        )
        summary = trtexec.run(cmd, log_path=str(artifact.path) + ".profile.log")
        samples = trtexec.parse_times(times).get("gpu_compute") if Path(times).is_file() else None
        return trtexec.to_latency_stats(summary, "gpu_compute", samples, env={"command": cmd})


RUNTIME = TensorRTRuntime()
