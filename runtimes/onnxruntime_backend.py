"""ONNX Runtime backend.

Artifact: the ONNX file copied into ``workdir`` (``model.onnx``). ONNX Runtime optimizes the graph when
a session is created, in well under a second for these models, so the portable ONNX is what we keep.
With ``save_optimized=True`` the optimized graph is also written (``model.optimized.onnx``) for
inspection only: at level "all" it contains layout ops tied to this CPU's instruction set, so it is
not loaded back. Sessions use explicit thread counts and sequential execution, so a measurement says
exactly how many cores it used.

Options: ``providers`` (default ["CPUExecutionProvider"]; CUDA / TensorRT EPs only when asked for and
present), ``graph_optimization_level`` ("all" | "extended" | "basic" | "disable"), ``inter_op_threads``
(default 1), ``allow_spinning`` (bool; None keeps ORT's default), ``save_optimized``, ``trt_options``
(extra TensorRT EP provider options, e.g. ``{"trt_max_workspace_size": 1 << 30}``).

With the TensorRT EP, engines and timing caches go to ``workdir/trt_cache`` (engine and timing cache
enabled): without them every session rebuilds the engine, minutes on a Jetson. ``compile`` creates the
session *and* runs it once, so ``compile_s`` includes the engine build wherever the EP does it; later
sessions load the cached engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeprune.errors import CompileError, InvalidConfigError, UnsupportedPrecisionError
from edgeprune.runtimes.base import Artifact, CompileJob, Runtime, Session, TensorSpec, failing_as

CPU_EP = "CPUExecutionProvider"
LEVELS = {
    "all": "ORT_ENABLE_ALL",
    "extended": "ORT_ENABLE_EXTENDED",
    "basic": "ORT_ENABLE_BASIC",
    "disable": "ORT_DISABLE_ALL",
}
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(bool)": "bool",
}
TRT_EP = "TensorrtExecutionProvider"
TRT_CACHE_DIR = "trt_cache"  # inside the artifact's folder, so the artifact stays movable
KNOWN_OPTIONS = frozenset({
    "trt_options",
    "providers",
    "graph_optimization_level",
    "inter_op_threads",
    "allow_spinning",
    "save_optimized",
})


def _session_options(ort, options: dict, optimized_path: str | None = None):
    so = ort.SessionOptions()
    threads = options.get("threads")
    if threads:
        so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = int(options.get("inter_op_threads", 1))
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(
        ort.GraphOptimizationLevel, LEVELS[options["graph_optimization_level"]]
    )
    if options.get("allow_spinning") is not None:
        so.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if options["allow_spinning"] else "0"
        )
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return so


def _providers(options: dict, precision: str, artifact_dir: str | os.PathLike | None = None) -> list:
    """Provider list with provider options; fp16 only through the TensorRT EP's own flag, its engine and
    timing caches in ``artifact_dir/trt_cache``."""
    out = []
    for p in options["providers"]:
        if p == TRT_EP:
            opts = {"trt_fp16_enable": precision == "fp16"}
            if artifact_dir is not None:
                cache = os.path.join(os.fspath(artifact_dir), TRT_CACHE_DIR)
                os.makedirs(cache, exist_ok=True)
                opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache,
                            trt_timing_cache_enable=True, trt_timing_cache_path=cache)
            opts.update(options.get("trt_options") or {})
            out.append((p, opts))
        else:
            out.append(p)
    return out


class OnnxRuntimeSession(Session):
    def __init__(self, artifact: Artifact, ort: Any) -> None:
        super().__init__(artifact)
        opts = artifact.options
        self.sess = ort.InferenceSession(
            artifact.path,
            sess_options=_session_options(ort, opts),
            providers=_providers(opts, artifact.precision, artifact.directory),
        )
        self.inputs = [self._spec(i) for i in self.sess.get_inputs()]
        self.outputs = [self._spec(o) for o in self.sess.get_outputs()]

    @staticmethod
    def _spec(arg) -> TensorSpec:
        import numpy as np

        shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
        return TensorSpec(arg.name, shape, np.dtype(_ORT_TYPES.get(arg.type, "float32")))

    @property
    def providers(self) -> list[str]:
        return list(self.sess.get_providers())

    @property
    def intra_op_threads(self) -> int:
        return int(self.sess.get_session_options().intra_op_num_threads)

    def _env_extra(self) -> dict:
        return {
            "providers": self.providers,
            "graph_optimization_level": self.artifact.options.get("graph_optimization_level"),
        }

    def _run(self, feeds):
        return self.sess.run(None, feeds)

    def _close(self) -> None:
        self.sess = None


def _zero_feeds(sess) -> dict:
    """Zero inputs for a session's first run (dynamic dims as 1; the EP builds for what it sees)."""
    import numpy as np

    feeds = {}
    for arg in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in arg.shape]
        feeds[arg.name] = np.zeros(shape, dtype=np.dtype(_ORT_TYPES.get(arg.type, "float32")))
    return feeds


class OnnxRuntimeRuntime(Runtime):
    name = "onnxruntime"
    precisions = ("fp32", "fp16")  # fp16 only with the TensorRT EP (checked in _check)
    known_options = KNOWN_OPTIONS
    copies_onnx = True  # the artifact is the portable ONNX; ORT optimizes when a session opens

    def _check(self, ort: Any, job: CompileJob) -> None:
        options = job.requested
        opts = job.options
        opts.update({
            "providers": list(options.get("providers") or [CPU_EP]),
            "graph_optimization_level": options.get("graph_optimization_level", "all"),
            "inter_op_threads": int(options.get("inter_op_threads", 1)),
            "allow_spinning": options.get("allow_spinning"),
        })
        if options.get("trt_options"):
            if not isinstance(options["trt_options"], dict):
                raise InvalidConfigError("onnxruntime: trt_options must be a dict of TensorRT EP options")
            opts["trt_options"] = dict(options["trt_options"])
        if opts["graph_optimization_level"] not in LEVELS:
            raise InvalidConfigError(f"graph_optimization_level must be one of {list(LEVELS)}")
        available = ort.get_available_providers()
        missing = [p for p in opts["providers"] if p not in available]
        if missing:
            raise CompileError(
                f"onnxruntime providers {missing} are not available here; available: {available}"
            )
        if job.precision == "fp16" and TRT_EP not in opts["providers"]:
            raise UnsupportedPrecisionError(
                "onnxruntime runs fp16 only through the TensorRT execution provider "
                "(providers=['TensorrtExecutionProvider', ...]); the CPU/CUDA EPs would need an fp16 model"
            )

    def _build(self, ort: Any, job: CompileJob) -> tuple[Path, list[Path]]:
        """Create one session to check the ONNX loads and time the graph optimization."""
        model, opts = job.model, job.options
        files = [model]
        optimized = None
        if job.requested.get("save_optimized"):
            optimized = model.with_name("model.optimized.onnx")
            files.append(optimized)
        uses_trt = TRT_EP in opts["providers"]
        with failing_as(f"onnxruntime could not load {job.onnx_path}"):
            sess = ort.InferenceSession(
                str(model),
                sess_options=_session_options(ort, opts, optimized and str(optimized)),
                providers=_providers(opts, job.precision, model.parent),
            )
            if uses_trt:  # the EP may build engines on the first run: make compile_s include it
                sess.run(None, _zero_feeds(sess))
        job.meta.update({
            "providers_used": list(sess.get_providers()),
            "optimized_model": optimized and optimized.name,
            "compile_includes": "session creation" + (" and a first run (TensorRT engine build)"
                                                      if uses_trt else ""),
            **({"trt_cache_dir": TRT_CACHE_DIR} if uses_trt else {}),
        })
        return model, files

    def _open(self, artifact: Artifact) -> Session:
        return OnnxRuntimeSession(artifact, self.sdk())


RUNTIME = OnnxRuntimeRuntime()
