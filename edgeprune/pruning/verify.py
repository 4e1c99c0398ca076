"""Self-checks of the pruning core, usable on any model: a plan is exact when removing channels
whose outgoing contribution is zero leaves the outputs unchanged."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeprune.pruning.importance import get_tensor
from edgeprune.pruning.plan_io import PruningPlan
from edgeprune.pruning.surgery import apply


def silence_removed(model: nn.Module, plan: PruningPlan) -> nn.Module:
    """Zero every consumer weight reading a channel the plan's first step removes (in place)."""
    with torch.no_grad():
        for p in plan.steps[0]["params"]:
            if p["role"] == "in":
                t = get_tensor(model, p["name"])
                t.index_fill_(p["dim"], torch.tensor(p["remove"], dtype=torch.long, device=t.device), 0.0)
    return model


def _flat(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    return [t for o in out for t in _flat(o)]


def max_output_change(model: nn.Module, plan: PruningPlan, example_inputs: Any) -> float:
    """Silence the removed channels, prune, and return the largest change of any eval output,
    relative to that output's scale (``max|a - b| / max(1, max|a|)``)."""
    silence_removed(model, plan)
    model.eval()
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    with torch.no_grad():
        before = _flat(model(*args))
        apply(model, plan)
        after = _flat(model(*args))
    if len(before) != len(after) or any(a.shape != b.shape for a, b in zip(before, after)):
        return float("inf")
    return max(float((a - b).abs().max()) / max(1.0, float(a.abs().max())) for a, b in zip(before, after))
