"""Stable fingerprints of weights, inputs and settings, used as cache keys and run identities."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import nn


def as_input_tuple(example_inputs: Any) -> tuple:
    """``example_inputs`` as a tuple (a lone tensor becomes a 1-tuple)."""
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs)
    return (example_inputs,)


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 over every state_dict entry's name, dtype, shape and raw bytes (sorted by name)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # Viewing as bytes works for every dtype (bf16 and bool included), unlike .numpy().
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def input_signature(example_inputs: Any) -> list:
    """JSON-able description (shape, dtype) of the example inputs."""
    sig = []
    for x in as_input_tuple(example_inputs):
        if isinstance(x, torch.Tensor):
            sig.append({"shape": list(x.shape), "dtype": str(x.dtype)})
        else:
            sig.append({"type": type(x).__name__, "repr": repr(x)[:200]})
    return sig


def json_sha256(obj: Any) -> str:
    """SHA-256 of the canonical JSON of ``obj`` (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def describe_callable(obj: Any) -> dict:
    """Identity of an evaluator or fine-tune callable: its ``settings()`` if it has one, else its type."""
    desc: dict[str, Any] = {"type": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    settings = getattr(obj, "settings", None)
    if callable(settings):
        desc["settings"] = settings()
    elif hasattr(obj, "__qualname__"):  # a plain function
        desc["type"] = f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    return desc
