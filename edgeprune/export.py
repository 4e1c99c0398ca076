"""Export a detector to a verified, self-describing ONNX file (static shapes, opset 17).

The file carries edgeprune metadata (``metadata_props["edgeprune"]``, JSON) so runtimes and bundles
know the input size, preprocessing and class names without the PyTorch model. Before the file is
written, onnxruntime runs it on the example input and its output is compared with PyTorch's.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune._version import __version__
from edgeprune.errors import EdgepruneError, ExportError, InvalidModelError, MissingDependencyError
from edgeprune.export_check import (
    capture_tracer_warnings,
    check_second_input,
    check_tracer_warnings,
    reference_outputs,
    second_input,
)
from edgeprune.fileio import atomic_write_bytes
from edgeprune.runtimes.model_io import LAYOUTS, ModelIO

INPUT_NAME = "images"
OUTPUT_NAME = "output"
METADATA_KEY = "edgeprune"


@dataclass(frozen=True)
class ExportResult:
    """Where the ONNX file was written, how far ORT was from PyTorch, and the metadata stored."""

    path: Path
    max_abs_diff: float | None
    metadata: dict[str, Any] = field(default_factory=dict)


def _example_tensor(example_inputs: Any) -> torch.Tensor:
    """Accept a tensor or a 1-tuple/list holding one; require a float [B, 3, H, W] image batch."""
    x = example_inputs
    if isinstance(x, (tuple, list)):
        if len(x) != 1:
            raise InvalidModelError(f"example_inputs must hold exactly one tensor, got {len(x)} items")
        x = x[0]
    if not isinstance(x, torch.Tensor):
        raise InvalidModelError(f"example_inputs must be a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
    if x.dim() != 4 or not x.is_floating_point():
        raise InvalidModelError(
            f"example_inputs must be a float tensor [B, C, H, W], got shape {tuple(x.shape)} dtype {x.dtype}")
    return x


def _output_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ExportError(f"path must be a file path, got {path!r}")
    out = Path(path)
    if out.is_dir():
        raise ExportError(f"path {out} is a directory; give a file name such as {out / 'model.onnx'}")
    if out.parent.exists() and not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: {out.parent} is not a directory")
    return out


def _torch_export(model: nn.Module, x: torch.Tensor, tmp_path: Path, opset: int) -> list[str]:
    """torch.onnx.export with the TorchScript exporter: works offline, no onnxscript needed.

    torch >= 2.9 defaults to the dynamo exporter (needs onnxscript); the TorchScript path is
    deprecated there but still present and produces the plain static graph TensorRT/OpenVINO want.
    """
    kwargs: dict[str, Any] = dict(
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], opset_version=opset, do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    try:
        with capture_tracer_warnings() as tracer_warnings:  # deprecation notices hidden, tracer ones kept
            torch.onnx.export(model, (x,), str(tmp_path), **kwargs)
        return tracer_warnings
    except (ImportError, ModuleNotFoundError) as e:
        raise MissingDependencyError("onnxscript", detail=f"torch.onnx.export needs it here: {e}") from e
    except Exception as e:  # the exporter raises many types; the user needs the op and the cause
        raise ExportError(f"torch.onnx.export failed (opset {opset}): {type(e).__name__}: {e}") from e


def model_io(model: nn.Module, x: torch.Tensor, out: torch.Tensor) -> ModelIO:
    """The ``ModelIO`` of ``model`` at the example input: size, output layout, class names."""
    layout = getattr(model, "output_layout", "cxcywh_obj_cls")
    if layout not in LAYOUTS:
        raise ExportError(f"model.output_layout {layout!r} is not one of {list(LAYOUTS)}")
    n_cls = int(out.shape[-1]) - (5 if layout == "cxcywh_obj_cls" else 4)
    names = getattr(model, "names", None)
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if names is None:
        names = [f"class{i}" for i in range(n_cls)]
    if n_cls < 1 or len(names) != n_cls:
        raise ExportError(f"the output has {int(out.shape[-1])} numbers per row, which in layout {layout} "
                          f"means {n_cls} classes, but the model has {len(names)} names")
    return ModelIO(input_size=(int(x.shape[2]), int(x.shape[3])), class_names=tuple(str(n) for n in names),
                   output_layout=layout, input_name=INPUT_NAME, output_name=OUTPUT_NAME)


def _build_metadata(model: nn.Module, x: torch.Tensor, out: torch.Tensor,
                    extra: Mapping[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        **model_io(model, x, out).to_dict(),
        "batch": int(x.shape[0]),
        "sparsity": None,
        "plan_sha256": None,
        "edgeprune_version": __version__,
    }
    if extra is not None:
        if not isinstance(extra, Mapping):
            raise ExportError(f"metadata must be a dict, got {type(extra).__name__}")
        meta.update(extra)
    try:
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ExportError(f"metadata must be JSON-serialisable: {e}") from e
    try:
        ModelIO.from_dict(meta)  # extra keys must not break the description readers rely on
    except EdgepruneError as e:
        raise ExportError(f"metadata does not describe the model's input/output: {e}") from e
    return meta


def _simplify(proto: Any) -> Any:
    import onnxslim

    try:
        return onnxslim.slim(proto)
    except Exception as e:  # simplification is an optimisation: keep the unsimplified graph
        warnings.warn(f"onnxslim failed ({type(e).__name__}: {e}); keeping the unsimplified graph",
                      stacklevel=3)
        return proto


def _run_ort(data: bytes, x: np.ndarray) -> np.ndarray:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingDependencyError("onnxruntime", "onnxruntime", "needed to verify the export") from e
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]


def _compare(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    """Max |ort - torch|; ExportError when any element is outside atol + rtol * |torch|."""
    if got.shape != ref.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch output shape {ref.shape}")
    if not np.isfinite(got).all() or not np.isfinite(ref).all():
        if not np.array_equal(np.isfinite(got), np.isfinite(ref)):
            raise ExportError("ONNX and PyTorch outputs differ in where they are NaN/inf")
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    diff = np.where(np.isfinite(diff), diff, 0.0)
    max_diff = float(diff.max()) if diff.size else 0.0
    excess = diff - (atol + rtol * np.abs(ref.astype(np.float64)))
    if diff.size and excess.max() > 0:
        worst = np.unravel_index(int(np.argmax(excess)), diff.shape)
        raise ExportError(
            f"ONNX output does not match PyTorch: max abs diff {max_diff:.6g}; worst element {worst} "
            f"onnx={float(got[worst]):.6g} torch={float(ref[worst]):.6g} "
            f"(tolerance atol={atol:g} + rtol={rtol:g} * |torch|)")
    return max_diff


def export_onnx(
    model: nn.Module,
    example_inputs: Any,
    path: str | os.PathLike,
    *,
    opset: int = 17,
    simplify: bool = True,
    metadata: Mapping[str, Any] | None = None,
    verify: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    allow_tracer_warnings: bool = False,
) -> ExportResult:
    """Export ``model`` (eval-mode forward) to ONNX at ``path``: static shapes, verified, with metadata.

    ``metadata`` is merged into the stored JSON (e.g. ``{"sparsity": 0.5, "plan_sha256": ...}``).
    Torch tracer warnings (value-dependent Python control flow) are an ExportError unless
    ``allow_tracer_warnings``; ``verify`` also compares ONNX and PyTorch on a second, different input.
    """
    import onnx

    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = _example_tensor(example_inputs)
    out_path = _output_path(path)
    was_training = model.training
    model.eval()
    try:
        try:
            with torch.no_grad():
                ref = model(x)
        except Exception as e:  # any user-model failure: say it happened before export began
            raise InvalidModelError(
                f"model forward failed on example_inputs {tuple(x.shape)}: {type(e).__name__}: {e}") from e
        if not isinstance(ref, torch.Tensor) or ref.dim() != 3:
            got = tuple(ref.shape) if isinstance(ref, torch.Tensor) else type(ref).__name__
            raise InvalidModelError(
                f"model.eval() forward must return one tensor [B, N, K] (rows of boxes), got {got}")
        meta = _build_metadata(model, x, ref, metadata)
        x2 = second_input(x)
        ref2 = reference_outputs(model, x2) if verify else None
        with tempfile.TemporaryDirectory(prefix="edgeprune-export-") as tmp:
            tmp_file = Path(tmp) / "model.onnx"
            check_tracer_warnings(_torch_export(model, x, tmp_file, opset), allow_tracer_warnings)
            proto = onnx.load(str(tmp_file))
    finally:
        model.train(was_training)

    if simplify:
        proto = _simplify(proto)
    del proto.metadata_props[:]
    proto.metadata_props.add(key=METADATA_KEY, value=json.dumps(meta))
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"exported ONNX model is invalid: {e}") from e
    data = proto.SerializeToString()

    max_diff = None
    if verify:
        x_np = x.detach().cpu().float().numpy()
        max_diff = _compare(_run_ort(data, x_np), ref.detach().cpu().float().numpy(), rtol, atol)
        check_second_input(lambda a: _run_ort(data, a), x2.detach().cpu().float().numpy(), ref2,
                           lambda got, want: _compare(got, want, rtol, atol))
    try:
        atomic_write_bytes(out_path, data)
    except OSError as e:
        raise ExportError(f"cannot write {out_path}: {e}") from e
    return ExportResult(out_path, max_diff, meta)


def read_metadata(onnx_path: str | os.PathLike) -> dict[str, Any]:
    """The edgeprune metadata dict stored in an ONNX file by ``export_onnx``."""
    import onnx

    p = Path(onnx_path)
    if not p.is_file():
        raise ExportError(f"ONNX file not found: {p}")
    try:
        proto = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError and others on a broken file
        raise ExportError(f"cannot read ONNX file {p}: {e}") from e
    for prop in proto.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                return json.loads(prop.value)
            except json.JSONDecodeError as e:
                raise ExportError(f"edgeprune metadata in {p} is not valid JSON: {e}") from e
    raise ExportError(f"{p} has no edgeprune metadata (metadata_props key '{METADATA_KEY}')")
