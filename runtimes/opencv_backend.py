"""OpenCV DNN backend.

OpenCV has no compiled format: the artifact is the ONNX file plus meta saying how to open it.
OpenCV 5 has two ONNX engines: ``ENGINE_NEW`` (a new graph engine, CPU only) and ``ENGINE_CLASSIC``;
``ENGINE_AUTO`` tries the new one first. The new engine *ignores* ``setPreferableBackend`` /
``setPreferableTarget`` with only a log warning (measured on 5.0.0: asking it for CUDA on a machine
without CUDA "works" and runs on the CPU). So whenever a non-default backend or target is asked for,
this backend opens the model with the classic engine (and refuses ``engine="new"``), so the choice is
never silently dropped; the engine actually used is recorded in ``artifact.meta["engine"]``.
Compile runs one inference, because the classic engine reports an unavailable backend only then.

Options: ``backend`` (opencv | default | cuda | openvino | vkcom | cann | timvx | webnn), ``target``
(cpu | opencl | cuda | vulkan | npu | ...), ``engine`` (auto | new | classic). ``threads`` calls
``cv2.setNumThreads`` (process-wide; re-applied before each run when sessions disagree).
fp16 maps the target to its FP16 variant (cpu on ARM only: on x86 OpenCV falls back to fp32 silently).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from edgeprune.errors import CompileError, InvalidConfigError, UnsupportedPrecisionError
from edgeprune.runtimes.base import Artifact, CompileJob, Runtime, Session, failing_as
from edgeprune.runtimes.onnx_info import io_specs, random_feeds, specs_from_meta, specs_to_meta

BACKENDS = {
    "default": "DNN_BACKEND_DEFAULT",
    "opencv": "DNN_BACKEND_OPENCV",
    "cuda": "DNN_BACKEND_CUDA",
    "openvino": "DNN_BACKEND_INFERENCE_ENGINE",
    "inference_engine": "DNN_BACKEND_INFERENCE_ENGINE",
    "vkcom": "DNN_BACKEND_VKCOM",
    "cann": "DNN_BACKEND_CANN",
    "timvx": "DNN_BACKEND_TIMVX",
    "webnn": "DNN_BACKEND_WEBNN",
}
TARGETS = {
    "cpu": "DNN_TARGET_CPU",
    "cpu_fp16": "DNN_TARGET_CPU_FP16",
    "opencl": "DNN_TARGET_OPENCL",
    "opencl_fp16": "DNN_TARGET_OPENCL_FP16",
    "cuda": "DNN_TARGET_CUDA",
    "cuda_fp16": "DNN_TARGET_CUDA_FP16",
    "vulkan": "DNN_TARGET_VULKAN",
    "npu": "DNN_TARGET_NPU",
    "myriad": "DNN_TARGET_MYRIAD",
    "fpga": "DNN_TARGET_FPGA",
    "hddl": "DNN_TARGET_HDDL",
}
ENGINES = {"auto": "ENGINE_AUTO", "new": "ENGINE_NEW", "classic": "ENGINE_CLASSIC"}
DEFAULT_BACKENDS = {"opencv", "default"}
KNOWN_OPTIONS = frozenset({"backend", "target", "engine"})


def resolve_options(
    backend: str = "opencv",
    target: str = "cpu",
    engine: str = "auto",
    precision: str = "fp32",
    machine: str | None = None,
) -> dict:
    """Validate names and choose the engine: a non-default backend/target forces the classic engine."""
    backend, target, engine = str(backend).lower(), str(target).lower(), str(engine).lower()
    if backend not in BACKENDS:
        raise InvalidConfigError(f"opencv backend '{backend}' unknown; known: {sorted(BACKENDS)}")
    if target not in TARGETS:
        raise InvalidConfigError(f"opencv target '{target}' unknown; known: {sorted(TARGETS)}")
    if engine not in ENGINES:
        raise InvalidConfigError(f"opencv engine '{engine}' unknown; known: {sorted(ENGINES)}")
    if precision == "fp16":
        if target.endswith("_fp16"):
            pass
        elif target == "cpu" and (machine or platform.machine()).lower() not in ("aarch64", "arm64"):
            raise UnsupportedPrecisionError(
                "OpenCV DNN fp16 on CPU needs an ARMv8 CPU; on this machine it would silently run fp32"
            )
        elif target + "_fp16" in TARGETS:
            target += "_fp16"
        else:
            raise UnsupportedPrecisionError(f"OpenCV DNN has no fp16 variant of target '{target}'")
    elif precision != "fp32":
        raise UnsupportedPrecisionError(f"OpenCV DNN does not support precision '{precision}' here")
    custom = backend not in DEFAULT_BACKENDS or target != "cpu"
    reason = "default backend/target"
    if custom and engine == "new":
        raise CompileError(
            f"OpenCV's new DNN engine ignores backend '{backend}' / target '{target}'; "
            "use engine='classic' (or 'auto', which picks classic for non-CPU backends)"
        )
    if custom and engine == "auto":
        engine, reason = "classic", f"backend '{backend}' / target '{target}' need the classic engine"
    return {"backend": backend, "target": target, "engine": engine, "engine_reason": reason}


def open_net(cv2, path: str, opts: dict):
    """Read the ONNX with the chosen engine and set backend and target."""
    net = cv2.dnn.readNetFromONNX(path, getattr(cv2.dnn, ENGINES[opts["engine"]]))
    if opts["backend"] not in DEFAULT_BACKENDS or opts["target"] != "cpu":
        # only then: on the new engine even a CPU target logs "not supported" on every open
        net.setPreferableBackend(getattr(cv2.dnn, BACKENDS[opts["backend"]]))
        net.setPreferableTarget(getattr(cv2.dnn, TARGETS[opts["target"]]))
    return net


def engine_of(net) -> str:
    """Which engine a Net uses: the new engine's dump() is a graph listing with ``main_graph``."""
    try:
        text = net.dump()
    except Exception:  # the classic engine cannot dump before its first forward
        return "classic"
    return "new" if "main_graph" in text else "classic"


class OpenCVSession(Session):
    def __init__(self, artifact: Artifact, cv2: Any) -> None:
        super().__init__(artifact)
        self.cv2 = cv2
        self.threads = artifact.options.get("threads")
        self._apply_threads()
        self.net = open_net(self.cv2, artifact.path, artifact.options)
        self.engine = engine_of(self.net)
        self.inputs = specs_from_meta(artifact.meta["inputs"])
        self.outputs = specs_from_meta(artifact.meta["outputs"])
        self._out_names = list(artifact.meta.get("forward_names") or self.output_names)

    def _apply_threads(self) -> None:
        if self.threads and self.cv2.getNumThreads() != self.threads:
            self.cv2.setNumThreads(int(self.threads))

    def _env_extra(self) -> dict:
        o = self.artifact.options
        return {
            "engine": self.engine,
            "backend": o["backend"],
            "target": o["target"],
            "cv2_num_threads": self.cv2.getNumThreads(),
        }

    def _run(self, feeds):
        self._apply_threads()
        for name, x in feeds.items():
            self.net.setInput(x, name)
        outs = self.net.forward(self._out_names)
        return [o.copy() for o in outs]

    def _close(self) -> None:
        self.net = None


def _last_line(exc: BaseException) -> str:
    """cv2.error messages are multi-line C++ traces; the last line says what failed."""
    return str(exc).strip().splitlines()[-1]


class OpenCVRuntime(Runtime):
    name = "opencv"
    precisions = ("fp32", "fp16")
    known_options = KNOWN_OPTIONS
    copies_onnx = True  # OpenCV has no compiled format: the artifact is the ONNX plus meta

    def _check(self, cv2: Any, job: CompileJob) -> None:
        requested = job.requested
        opts = resolve_options(
            requested.get("backend", "opencv"),
            requested.get("target", "cpu"),
            requested.get("engine", "auto"),
            job.precision,
        )
        job.meta.update(engine_requested=requested.get("engine", "auto"),
                        engine_reason=opts.pop("engine_reason"))
        job.options.update(opts)

    def _build(self, cv2: Any, job: CompileJob) -> tuple[Path, list[Path]]:
        """Pick the engine, and run the model once to prove the backend/target really work."""
        model, opts = job.model, job.options
        inputs, outputs = io_specs(model)
        if job.threads:
            cv2.setNumThreads(int(job.threads))
        with failing_as(f"OpenCV DNN could not run {job.onnx_path} with backend '{opts['backend']}', target "
                        f"'{opts['target']}', engine '{opts['engine']}'", catch=cv2.error, detail=_last_line):
            net = open_net(cv2, str(model), opts)
            engine = engine_of(net)
            for name, x in random_feeds(inputs).items():
                net.setInput(x, name)
            names = [o.name for o in outputs]
            try:
                net.forward(names)
            except cv2.error:
                # the classic engine may name outputs after layers, not ONNX tensors
                names = list(net.getUnconnectedOutLayersNames())
                net.forward(names)
        job.meta.update(engine=engine, inputs=specs_to_meta(inputs), outputs=specs_to_meta(outputs),
                        forward_names=names)
        return model, [model]

    def _open(self, artifact: Artifact) -> Session:
        return OpenCVSession(artifact, self.sdk())


RUNTIME = OpenCVRuntime()
