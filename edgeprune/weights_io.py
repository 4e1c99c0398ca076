"""Load a weights file into a model safely: ``torch.load(weights_only=True)``, one clear error per
way a file can be wrong (missing, not a torch file, truncated, not a state_dict, keys or shapes
that do not fit the model)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidConfigError


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (a state_dict, or a dict holding one under ``model``)."""
    p = Path(path)
    if not p.is_file():
        raise InvalidConfigError(f"weights file {p} not found" + (" (it is a folder)" if p.is_dir() else ""))
    try:
        state: Any = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  (UnpicklingError, RuntimeError on truncated zips, EOFError...)
        first = str(e).splitlines()[0][:160] if str(e) else ""
        raise InvalidConfigError(
            f"weights file {p} cannot be read as plain tensors ({type(e).__name__}: {first}); it is damaged, "
            "truncated, not a PyTorch file, or holds pickled objects (only state_dicts are loaded)") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InvalidConfigError(f"weights file {p} does not hold a state_dict (a mapping of names to "
                                 "tensors); save it with torch.save(model.state_dict(), path)")
    return state


def load_weights(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load a weights file into ``model`` (floats as float32); InvalidConfigError when it does not fit."""
    state = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise InvalidConfigError(f"weights file {path} does not fit the model: {'; '.join(parts)}; is it "
                                 "for another architecture, class count or pruned candidate?")
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model
