"""OpenVINO backend.

Artifact: OpenVINO IR (``model.xml`` + ``model.bin``) made with ``openvino.convert_model`` and saved
with ``compress_to_fp16=False`` (the default would silently halve the weights). The session compiles
it for the device with ``PERFORMANCE_HINT=LATENCY`` (one request, one stream: what a camera app does),
``INFERENCE_NUM_THREADS`` and an explicit ``INFERENCE_PRECISION_HINT``: on CPUs with BF16/AMX the
plugin's default is bf16, so fp32 must be asked for to be measured. fp16/bf16 are allowed only where
the device lists them in ``OPTIMIZATION_CAPABILITIES``; int8 needs a quantized model (NNCF) and is refused.

Options: ``device`` ("CPU" default, any of ``Core().available_devices``), ``performance_hint``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import CompileError, UnsupportedPrecisionError
from edgeprune.runtimes.base import Artifact, CompileJob, Runtime, Session, TensorSpec, failing_as

HINTS = {"fp32": ("f32", "FP32"), "fp16": ("f16", "FP16"), "bf16": ("bf16", "BF16")}
KNOWN_OPTIONS = frozenset({"device", "performance_hint"})


def compile_config(precision: str, threads: int | None, hint: str = "LATENCY") -> dict:
    """The properties passed to ``Core.compile_model``."""
    cfg: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": HINTS[precision][0]}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = int(threads)
    return cfg


def _type_name(t) -> str:
    get = getattr(t, "get_type_name", None)
    return str(get()) if callable(get) else str(t)


class OpenVINOSession(Session):
    def __init__(self, artifact: Artifact, ov: Any) -> None:
        super().__init__(artifact)
        core = ov.Core()
        o = artifact.options
        self.compiled = core.compile_model(
            artifact.path,
            o["device"],
            compile_config(artifact.precision, o.get("threads"), o["performance_hint"]),
        )
        self.request = self.compiled.create_infer_request()
        self.inputs = [self._spec(p) for p in self.compiled.inputs]
        self.outputs = [self._spec(p) for p in self.compiled.outputs]

    @staticmethod
    def _spec(port) -> TensorSpec:
        ps = port.get_partial_shape()
        shape = tuple(d.get_length() if d.is_static else None for d in ps)
        return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))

    def property(self, name: str):
        """A compiled-model property, e.g. ``INFERENCE_NUM_THREADS``."""
        return self.compiled.get_property(name)

    def _env_extra(self) -> dict:
        return {
            "device": self.artifact.options["device"],
            "inference_num_threads": int(self.property("INFERENCE_NUM_THREADS")),
            "inference_precision": _type_name(self.property("INFERENCE_PRECISION_HINT")),
        }

    def _run(self, feeds):
        self.request.infer(feeds)
        # copy: the request's output buffers are reused by the next inference
        return [self.request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]

    def _close(self) -> None:
        self.request = None
        self.compiled = None


class OpenVINORuntime(Runtime):
    name = "openvino"
    precisions = ("fp32", "fp16", "bf16")
    known_options = KNOWN_OPTIONS

    def capabilities(self, device: str = "CPU") -> list[str]:
        """The device's OPTIMIZATION_CAPABILITIES (FP32, FP16, BF16, INT8, ...)."""
        return [str(c) for c in self.sdk().Core().get_property(device, "OPTIMIZATION_CAPABILITIES")]

    def check_precision(self, precision: str) -> str:
        if str(precision).lower() == "int8":
            raise UnsupportedPrecisionError(
                "openvino int8 needs a quantized model (e.g. NNCF post-training quantization); not built here"
            )
        return super().check_precision(precision)

    def _check(self, ov: Any, job: CompileJob) -> None:
        device = job.requested.get("device", "CPU")
        available = ov.Core().available_devices
        if device not in available:
            raise CompileError(f"OpenVINO device '{device}' not available; available: {available}")
        caps = self.capabilities(device)
        if HINTS[job.precision][1] not in caps:
            raise UnsupportedPrecisionError(
                f"OpenVINO {device} does not support {job.precision} here; capabilities: {caps}"
            )
        job.options.update(device=device, performance_hint=job.requested.get("performance_hint", "LATENCY"))
        job.meta["capabilities"] = caps

    def _build(self, ov: Any, job: CompileJob) -> tuple[Path, list[Path]]:
        """Convert ONNX to IR (fp32 weights) and compile it once to check and time it."""
        xml = job.workdir / "model.xml"
        opts = job.options
        t0 = time.perf_counter()
        with failing_as(f"OpenVINO could not convert {job.onnx_path}"):
            model = ov.convert_model(str(job.onnx_path))
            ov.save_model(model, str(xml), compress_to_fp16=False)
        t1 = time.perf_counter()
        with failing_as(f"OpenVINO could not compile {xml} for {opts['device']}"):
            ov.Core().compile_model(str(xml), opts["device"],
                                    compile_config(job.precision, job.threads, opts["performance_hint"]))
        job.meta.update(convert_s=t1 - t0, device_compile_s=time.perf_counter() - t1)
        return xml, [xml, xml.with_suffix(".bin")]

    def _open(self, artifact: Artifact) -> Session:
        return OpenVINOSession(artifact, self.sdk())


RUNTIME = OpenVINORuntime()
