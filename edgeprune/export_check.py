"""Checks that an ONNX export means the same function as the PyTorch model, beyond the one example.

Tracing records the ops one example input runs: a Python ``if`` on tensor values is frozen into the
branch that input took, and the graph is silently wrong for inputs taking the other branch. Two
checks catch it: torch's tracer warnings (``TracerWarning``, e.g. "Converting a tensor to a Python
boolean") are an error unless the caller opts in, and the exported graph is run on a second,
different input and compared with PyTorch there too.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from edgeprune.errors import ExportError


@contextmanager
def capture_tracer_warnings() -> Iterator[list[str]]:
    """Collect the messages of torch tracer warnings raised in the block; hide other warnings
    (the legacy exporter's deprecation notices)."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        yield found
    tracer_cls = getattr(torch.jit, "TracerWarning", ())
    for r in records:
        if tracer_cls and issubclass(r.category, tracer_cls):
            msg = f"{r.filename}:{r.lineno}: {str(r.message).splitlines()[0]}"
            if msg not in found:
                found.append(msg)


def check_tracer_warnings(messages: list[str], allow: bool) -> None:
    """ExportError listing the tracer warnings, unless ``allow`` (then they are re-issued as warnings)."""
    if not messages:
        return
    shown = "\n  ".join(messages[:5]) + (f"\n  ... and {len(messages) - 5} more" if len(messages) > 5 else "")
    if allow:
        warnings.warn(f"tracer warnings during ONNX export (allowed by the caller):\n  {shown}", stacklevel=3)
        return
    raise ExportError(
        "the model's forward depends on tensor values in Python (torch tracer warnings below); the ONNX "
        f"graph would be right only for inputs like the example:\n  {shown}\nMake the forward free of "
        "value-dependent Python control flow, or pass allow_tracer_warnings=True if you know it is safe")


def second_input(x: torch.Tensor) -> torch.Tensor:
    """A different input of the same shape: the image mirrored in value (``1 - x``) and in width, so
    a value-dependent branch (a mean, a max, a threshold) likely goes the other way."""
    return (1.0 - x).flip(-1).contiguous()


def reference_outputs(model: nn.Module, x2: torch.Tensor) -> np.ndarray:
    """PyTorch's eval-mode output on the second input."""
    with torch.no_grad():
        out = model(x2)
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"model output on a second input is {type(out).__name__}, not one tensor")
    return out.detach().cpu().float().numpy()


def check_second_input(run_onnx: Callable[[np.ndarray], np.ndarray], x2: np.ndarray, ref2: np.ndarray,
                       compare: Callable[[np.ndarray, np.ndarray], float]) -> float:
    """Run the exported graph on the second input and compare with PyTorch's output there."""
    try:
        return compare(run_onnx(x2), ref2)
    except ExportError as e:
        raise ExportError(
            "the ONNX graph matches PyTorch on the example input but not on a second, different input: "
            "the forward has data-dependent control flow that tracing froze into one branch "
            f"({e}); make the forward free of value-dependent Python branches") from None
