"""Self-checks of the pruning core, usable on any model: a plan is exact when removing channels
whose outgoing contribution is zero leaves the outputs unchanged (the zeroed-channel oracle)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidPlanError, PruneVerificationError
from edgeprune.pruning.importance import get_tensor
from edgeprune.pruning.plan_io import PruningPlan

# Largest relative output change accepted: removing exact zeros only reorders float sums (~1e-6).
TOLERANCE = 1e-4


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
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    return []


def output_change(before: list[torch.Tensor], after: list[torch.Tensor], per_column: bool = False) -> float:
    """Largest change of any output relative to its scale (``max|a - b| / max(1, max|a|)``);
    inf when the outputs' number, shapes or non-finite positions differ. ``per_column`` takes the
    scale per index of the last dim, so that small columns (YOLO's probabilities beside box pixels)
    are held to their own scale."""
    if len(before) != len(after) or any(a.shape != b.shape for a, b in zip(before, after)):
        return float("inf")
    worst = 0.0
    for a, b in zip(before, after):
        a, b = a.detach().double(), b.detach().double()
        fa, fb = torch.isfinite(a), torch.isfinite(b)
        if not torch.equal(fa, fb) or not torch.equal(a[~fa], b[~fb]):
            return float("inf")
        if per_column and a.ndim >= 2 and a.numel() and bool(fa.all()):
            scale = a.abs().flatten(0, -2).amax(0).clamp_min(1.0)
            worst = max(worst, float(((a - b).abs().flatten(0, -2) / scale).max()))
        elif a.numel() and fa.any():
            diff = float((a[fa] - b[fb]).abs().max())
            worst = max(worst, diff / max(1.0, float(a[fa].abs().max())))
    return worst


def max_output_change(model: nn.Module, plan: PruningPlan, example_inputs: Any) -> float:
    """Silence the removed channels, prune, and return the largest change of any eval output,
    relative to that output's scale (``max|a - b| / max(1, max|a|)``)."""
    from edgeprune.pruning.surgery import apply

    silence_removed(model, plan)
    model.eval()
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    with torch.no_grad():
        before = _flat(model(*args))
        apply(model, plan, verify=False)
        after = _flat(model(*args))
    return output_change(before, after)


def _silence_step(model: nn.Module, step: dict[str, Any]) -> None:
    """Replace (not modify) each consumer weight by a copy whose removed input channels are zero, so
    the original tensors stay intact for a rollback."""
    from edgeprune.pruning.surgery import _set_tensor

    with torch.no_grad():
        for p in step["params"]:
            if p["role"] == "in" and p["remove"]:
                t = get_tensor(model, p["name"]).detach().clone()
                t.index_fill_(p["dim"], torch.tensor(p["remove"], dtype=torch.long, device=t.device), 0.0)
                _set_tensor(model, p["name"], t)


def _groups_of(step: dict[str, Any]) -> str:
    names = list(step.get("groups", {}))
    return ", ".join(repr(g) for g in names[:6]) + (" ..." if len(names) > 6 else "") or "(none)"


def verified_apply(model: nn.Module, plan: PruningPlan, example_inputs: Any, graph: Any = None) -> nn.Module:
    """``apply`` with, per step, the dataflow fingerprint check and the zeroed-channel output check
    (two forward passes); any failure restores the model and raises. ``graph``: the trace the
    first step was planned on, to skip tracing again."""
    from edgeprune.pruning.fingerprint import fingerprint_of, trace_fingerprint
    from edgeprune.pruning.surgery import _Snapshot, apply_step

    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    snap = _Snapshot(model, plan)
    was_training = model.training
    model.eval()
    try:
        for k, step in enumerate(plan.steps):
            if k == 0 and graph is not None and getattr(graph, "model", None) is model:
                fp = fingerprint_of(graph)
            else:
                fp = trace_fingerprint(model, example_inputs)
            if fp != step["fingerprint"]:
                raise InvalidPlanError(
                    f"plan step {k} was made on a model with a different dataflow (its channel couplings "
                    "differ from this model's, although parameter names may match); make the plan on "
                    "this model with ep.plan(ep.trace(model, example_inputs), ...)")
            _silence_step(model, step)
            with torch.no_grad():
                before = _flat(model(*args))
                apply_step(model, step)
                try:
                    after = _flat(model(*args))
                except Exception as e:  # noqa: BLE001  (the pruned forward itself is the finding)
                    raise PruneVerificationError(
                        f"plan step {k} (groups {_groups_of(step)}): the pruned model's forward failed "
                        f"({type(e).__name__}: {str(e)[:200]}): the forward uses a channel count the trace "
                        "did not see (e.g. x.view(n, self.c, -1)); the model was left unchanged. Exclude "
                        "the group(s) whose channels it reads (exclude=[...]), or pass verify=False to "
                        "skip this check") from None
            change = output_change(before, after, per_column=True)
            if not change <= TOLERANCE:
                raise PruneVerificationError(
                    f"plan step {k} (groups {_groups_of(step)}): removing channels whose contribution was "
                    f"zeroed changed the model's outputs by {change:.3g} (relative) on the example input: "
                    "the forward depends on a channel count the trace did not see (e.g. "
                    "`if x.shape[1] == 64`, `x / x.shape[1]`, `x.view(n, self.c, -1)`); the model was left "
                    "unchanged. Exclude the group(s) whose channels it reads (exclude=[...]), or pass "
                    "verify=False to skip this check")
    except BaseException:
        snap.restore()
        raise
    finally:
        model.train(was_training)
    return model
