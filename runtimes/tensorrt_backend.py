"""TensorRT backend (TensorRT 8.5 / JetPack 5.1 through 10.x; name-based tensor I/O).

Build: the Python builder (default) or ``trtexec`` (``builder="trtexec"``), from the same options
(``TrtBuildOptions``: precision, workspace_mib, dla_core + gpu_fallback, timing_cache, shapes, ...).
The engine is a plain serialized plan (``trtexec --loadEngine`` can load it) named by a cache key of
ONNX sha256, TensorRT version, GPU name, compute capability, precision and options; its sidecar
``<engine>.json`` holds the key fields. A matching engine is reused, anything else is rebuilt, and a
session refuses an engine whose sidecar names another TensorRT version or GPU.
Run: pycuda (page-locked host buffers, device buffers, one stream), ``execute_async_v3``.
INT8 needs ``calibrator=`` (an ``IInt8Calibrator``) or ``int8_calibration_cache=``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import (
    CompileError,
    IncompatibleArtifactError,
    MissingDependencyError,
    UnsupportedPrecisionError,
)
from edgeprune.runtimes import tensorrt_options as to
from edgeprune.runtimes import trtexec
from edgeprune.runtimes.base import Artifact, Runtime, Session, TensorSpec
from edgeprune.runtimes.fileio import atomic_write_bytes, write_json


def _trt():
    try:
        import tensorrt
    except ImportError:
        raise MissingDependencyError("tensorrt", "tensorrt") from None
    return tensorrt


def _cuda():
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise MissingDependencyError("pycuda", "tensorrt") from None
    cuda.init()
    return cuda


def gpu_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of CUDA device ``device``."""
    d = _cuda().Device(device)
    major, minor = d.compute_capability()
    return d.name(), f"{major}.{minor}"


def current_fields(onnx_sha256: str, options: to.TrtBuildOptions, device: int = 0) -> dict:
    name, cc = gpu_info(device)
    return to.cache_key_fields(onnx_sha256, _trt().__version__, name, cc, options)


class _CacheCalibrator:
    """An INT8 calibrator that only replays a calibration cache (no data); built lazily on TensorRT."""

    @staticmethod
    def make(trt, cache_path: str):
        class Calib(trt.IInt8EntropyCalibrator2):
            def __init__(self) -> None:
                super().__init__()

            def get_batch_size(self) -> int:
                return 1

            def get_batch(self, names):  # noqa: ARG002
                return None

            def read_calibration_cache(self):
                return Path(cache_path).read_bytes()

            def write_calibration_cache(self, cache) -> None:
                return None

        return Calib()


def build_engine(onnx_path: str, opts: to.TrtBuildOptions, calibrator=None) -> bytes:
    """Build a serialized engine with the TensorRT Python API."""
    trt = _trt()
    major = to.parse_version(trt.__version__)[0]
    logger = trt.Logger(trt.Logger.WARNING)
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
    if opts.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if opts.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator or _CacheCalibrator.make(trt, opts.int8_calibration_cache)
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
    def __init__(self, artifact: Artifact) -> None:
        super().__init__(artifact)
        trt, cuda = _trt(), _cuda()
        self.cuda = cuda
        device = int(artifact.options.get("device", 0))
        build = to.TrtBuildOptions.from_options(artifact.precision, **artifact.options.get("build", {}))
        sidecar = to.read_sidecar(artifact.path)
        to.check_loadable(sidecar or {}, current_fields(artifact.onnx_sha256, build, device), artifact.path)
        self.ctx = cuda.Device(device).retain_primary_context()
        self.ctx.push()
        try:
            self._setup(trt, cuda, artifact, build)
        except Exception:
            self.ctx.pop()
            raise

    def _setup(self, trt, cuda, artifact: Artifact, build: to.TrtBuildOptions) -> None:
        self.runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if build.dla_core is not None:
            self.runtime.DLA_core = int(build.dla_core)
        self.engine = self.runtime.deserialize_cuda_engine(Path(artifact.path).read_bytes())
        if self.engine is None:
            raise IncompatibleArtifactError(
                f"TensorRT could not deserialize {artifact.path}; rebuild it here"
            )
        self.context = self.engine.create_execution_context()
        self.stream = cuda.Stream()
        self.inputs, self.outputs, self.buffers = [], [], {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(self.engine.get_tensor_shape(name))
            if is_input and -1 in shape:
                shape = tuple(build.shapes[name])
                self.context.set_input_shape(name, shape)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            (self.inputs if is_input else self.outputs).append(TensorSpec(name, shape, dtype))
        for spec in self.inputs + self.outputs:
            shape = tuple(self.context.get_tensor_shape(spec.name))
            host = cuda.pagelocked_empty(shape, spec.dtype)
            dev = cuda.mem_alloc(max(1, host.nbytes))
            self.context.set_tensor_address(spec.name, int(dev))
            self.buffers[spec.name] = (host, dev)
        self.outputs = [
            TensorSpec(s.name, tuple(self.buffers[s.name][0].shape), s.dtype) for s in self.outputs
        ]

    def _env_extra(self) -> dict:
        name, cc = gpu_info(int(self.artifact.options.get("device", 0)))
        return {"gpu_name": name, "compute_capability": cc, "includes_transfers": True}

    def _run(self, feeds):
        cuda, s = self.cuda, self.stream
        for spec in self.inputs:
            host, dev = self.buffers[spec.name]
            np.copyto(host, feeds[spec.name])
            cuda.memcpy_htod_async(dev, host, s)
        if not self.context.execute_async_v3(stream_handle=s.handle):
            raise CompileError("TensorRT execute_async_v3 failed")
        for spec in self.outputs:
            host, dev = self.buffers[spec.name]
            cuda.memcpy_dtoh_async(host, dev, s)
        s.synchronize()
        return [self.buffers[o.name][0].copy() for o in self.outputs]

    def _close(self) -> None:
        for _, dev in self.buffers.values():
            dev.free()
        self.buffers, self.context, self.engine = {}, None, None
        self.ctx.pop()


class TensorRTRuntime(Runtime):
    name = "tensorrt"
    extra = "tensorrt"
    precisions = to.TRT_PRECISIONS

    def version(self) -> str:
        return _trt().__version__

    def compile(
        self,
        onnx_path,
        workdir,
        precision="fp32",
        threads=None,
        builder: str = "python",
        calibrator=None,
        device: int = 0,
        **options: Any,
    ) -> Artifact:
        """Build (or reuse a matching cached) engine; ``threads`` is ignored (GPU)."""
        precision = self.check_precision(precision)
        build = to.TrtBuildOptions.from_options(precision, **options)
        if precision == "int8" and calibrator is None and not build.int8_calibration_cache:
            raise UnsupportedPrecisionError("TensorRT int8 needs calibrator= or int8_calibration_cache=")
        if builder not in ("python", "trtexec"):
            raise CompileError(f"builder must be 'python' or 'trtexec', got {builder!r}")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        sha = self.onnx_sha256(onnx_path)
        fields = current_fields(sha, build, device)
        engine, reusable = to.resolve_engine(workdir, fields)
        t0 = time.perf_counter()
        if not reusable:
            if builder == "python":
                atomic_write_bytes(engine, build_engine(str(onnx_path), build, calibrator))
            else:
                cmd = trtexec.build_command(
                    self.version(),
                    onnx_path,
                    engine,
                    build,
                    build_only=True,
                    executable=trtexec.find_trtexec(),
                )
                trtexec.run(cmd, log_path=str(engine) + ".build.log")
            write_json(str(engine) + to.SIDECAR_SUFFIX, to.sidecar_for(fields, {"builder": builder}))
        build_s = time.perf_counter() - t0
        art = Artifact(
            runtime=self.name,
            path=str(engine),
            files=[str(engine), str(engine) + to.SIDECAR_SUFFIX],
            precision=precision,
            onnx_sha256=sha,
            options={
                "threads": None,
                "device": device,
                "builder": builder,
                "build": {k: v for k, v in build.__dict__.items() if k != "precision"},
            },
            meta={
                "runtime_version": self.version(),
                "compile_s": build_s,
                "cache_hit": reusable,
                "cache_key": to.cache_key(fields),
                "gpu_name": fields["gpu_name"],
                "compute_capability": fields["compute_capability"],
            },
        )
        art.save()
        return art

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
