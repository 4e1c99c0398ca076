"""``plan()``: choose channels to remove per group and write everything surgery needs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from edgeprune.errors import InvalidConfigError, InvalidPlanError, UnsupportedOperationError
from edgeprune.pruning.fingerprint import fingerprint_of
from edgeprune.pruning.graph import ChannelGroup, Graph, _matches, check_exclude
from edgeprune.pruning.importance import CRITERIA, all_scores, get_tensor
from edgeprune.pruning.plan_io import PruningPlan, seal_step
from edgeprune.pruning.surgery import derive_attrs


def kept_channels(channels: int, rate: float, round_to: int = 1) -> int:
    """Channels a group keeps: ``channels - round(rate * channels)``, rounded to a multiple of
    ``round_to`` (never below one multiple, never more than it has, never empty). Monotone in rate."""
    if rate <= 0 or channels < round_to:
        return channels
    keep = channels - math.floor(rate * channels + 0.5)
    keep = round_to * math.floor(keep / round_to + 0.5)
    return max(1, min(channels, max(round_to, keep)))


def _rates(graph: Graph, sparsity: float | None, rates: Mapping[str, float] | None,
           exclude: tuple[str, ...]) -> dict[str, float]:
    if (sparsity is None) == (rates is None):
        raise InvalidConfigError("give exactly one of sparsity= or rates=")
    if sparsity is not None:
        if not _is_number(sparsity) or not 0 <= sparsity <= 1:
            raise InvalidConfigError(f"sparsity must be a number in [0, 1], got {sparsity!r}")
        out = {g.id: float(sparsity) for g in graph.prunable_groups}
    else:
        out = {}
        for gid, r in dict(rates).items():
            g = graph.group(gid)
            if not _is_number(r) or not 0 <= r <= 1:
                raise InvalidConfigError(f"rate of group '{gid}' must be in [0, 1], got {r!r}")
            if not g.prunable and r > 0:
                raise InvalidPlanError(f"group '{gid}' cannot be pruned: {g.reason}")
            out[gid] = float(r)
    return {gid: r for gid, r in out.items()
            if not (gid in exclude or any(_matches(m, exclude) for m in graph.group(gid).modules))}


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _warn_round_to(graph: Graph, chosen: Mapping[str, float], round_to: int) -> None:
    small = [gid for gid, r in chosen.items() if r > 0 and graph.group(gid).channels < round_to]
    if small:
        shown = ", ".join(f"'{g}' ({graph.group(g).channels} ch)" for g in small[:5])
        more = f" and {len(small) - 5} more" if len(small) > 5 else ""
        warnings.warn(f"round_to={round_to} is above the channel count of {len(small)} group(s): "
                      f"{shown}{more}; they are left unpruned (lower round_to to prune them)",
                      UserWarning, stacklevel=3)


def plan(graph: Graph, sparsity: float | None = None, rates: Mapping[str, float] | None = None,
         criterion: str = "l2", round_to: int = 8, exclude: Iterable[str] = (), seed: int = 0) -> PruningPlan:
    """One-step plan removing the least important channels of each group (uniform ``sparsity`` or
    per-group ``rates``), keeping a multiple of ``round_to`` channels per group. The default 8 is the
    rounding no runtime here ran slower with (``benchmarks/bench_rounding.py``); 1 can be slower."""
    if not isinstance(graph, Graph):
        raise InvalidConfigError(f"plan() needs a Graph from trace(), got {type(graph).__name__}")
    if criterion not in CRITERIA:
        raise InvalidConfigError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    if not isinstance(round_to, int) or isinstance(round_to, bool) or round_to < 1:
        raise InvalidConfigError(f"round_to must be a positive integer, got {round_to!r}")
    _check_fresh(graph)
    chosen = _rates(graph, sparsity, rates, check_exclude(graph, exclude))
    _warn_round_to(graph, chosen, round_to)
    removed: list[np.ndarray] = []
    groups: dict[str, dict[str, int]] = {}
    scores = all_scores(graph, criterion, seed) if chosen else {}
    for gid, rate in chosen.items():
        g = graph.group(gid)
        keep = kept_channels(g.channels, rate, round_to)
        if keep >= g.channels:
            continue
        removed.append(_select(g, scores[gid], g.channels - keep))
        groups[gid] = {"channels": g.channels, "keep": keep}
    step = build_step(graph, np.concatenate(removed) if removed else np.zeros(0, np.int64))
    step.update(groups=groups, criterion=criterion, round_to=round_to)
    return PruningPlan([seal_step(step, fingerprint_of(graph))])


def _check_fresh(graph: Graph) -> None:
    for slot in graph.slots.values():
        try:
            shape = get_tensor(graph.model, slot.param).shape
        except KeyError:
            shape = ()
        if slot.dim >= len(shape) or shape[slot.dim] != slot.labels.size:
            raise InvalidPlanError(
                f"'{slot.param}' no longer has {slot.labels.size} entries on dim {slot.dim}: "
                "the model changed after trace(); trace it again before planning")


def _select(g: ChannelGroup, scores: np.ndarray, n_remove: int) -> np.ndarray:
    order = np.lexsort((np.arange(g.channels), scores))  # lowest score first, ties by index
    return g.roots[order[:n_remove]]


def build_step(graph: Graph, removed_roots: np.ndarray) -> dict[str, Any]:
    """Surgery step removing these channel classes: parameter slices, layer and size attributes."""
    removed = np.unique(removed_roots)
    params: list[dict[str, Any]] = []
    new_shapes: dict[str, dict[str, list[int]]] = {}
    for key, slot in graph.slots.items():
        idx = np.nonzero(np.isin(graph.slot_roots[key], removed))[0]
        if idx.size == 0:
            continue
        size = int(graph.slot_roots[key].size)
        params.append({"name": slot.param, "dim": slot.dim, "size": size, "remove": idx.tolist(),
                       "role": slot.role})
        mod, _, attr = slot.param.rpartition(".")
        current = get_tensor(graph.model, slot.param).shape
        shape = new_shapes.setdefault(mod, {}).setdefault(attr, list(current))
        shape[slot.dim] -= int(idx.size)
    attrs: list[dict[str, Any]] = []
    for mod, shapes in new_shapes.items():
        module = graph.model.get_submodule(mod) if mod else graph.model
        for attr, (old, new) in derive_attrs(module, {k: tuple(v) for k, v in shapes.items()}).items():
            attrs.append({"module": mod, "attr": attr, "old": old, "new": new, "type": type(old).__name__})
    attrs.extend(_size_attrs(graph, removed))
    return {"params": params, "attrs": attrs}


def _size_attrs(graph: Graph, removed: np.ndarray) -> list[dict[str, Any]]:
    """New values of split sizes / slice bounds held in module attributes."""
    values: dict[tuple[str, str], tuple[Any, Any]] = {}
    for sa in graph.size_attrs:
        kept = [int((~np.isin(graph.roots[p], removed)).sum()) for p in sa.pieces]
        new = kept[0] if sa.kind == "int" else type(sa.old)(kept)
        key = (sa.module, sa.attr)
        if key in values and values[key][1] != new:
            raise UnsupportedOperationError(
                "split", sa.module, f"attribute '{sa.attr}' sizes pieces of different tensors that would "
                f"need different values ({values[key][1]!r} vs {new!r}); exclude one of the groups")
        values[key] = (sa.old, new)
    return [{"module": m, "attr": a, "old": old, "new": new, "type": type(old).__name__}
            for (m, a), (old, new) in values.items() if old != new]
