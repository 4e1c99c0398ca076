"""Channel importance per group (criteria of the paper): low scores are removed first."""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torch import nn

from edgeprune.errors import InvalidConfigError
from edgeprune.pruning.graph import ChannelGroup, Graph

CRITERIA = ("l2", "l1", "bn_gamma", "bn_gamma_l1", "random")


def get_tensor(model: nn.Module, name: str) -> torch.Tensor:
    """A parameter or buffer by its dotted name (KeyError if absent)."""
    mod_name, _, attr = name.rpartition(".")
    try:
        module = model.get_submodule(mod_name) if mod_name else model
    except AttributeError:
        raise KeyError(name) from None
    if attr in module._parameters and module._parameters[attr] is not None:
        return module._parameters[attr]
    if attr in module._buffers and module._buffers[attr] is not None:
        return module._buffers[attr]
    raise KeyError(name)


def _per_index(t: torch.Tensor, dim: int, kind: str) -> np.ndarray:
    w = t.detach().transpose(0, dim).reshape(t.shape[dim], -1)
    v = torch.linalg.vector_norm(w.float(), ord=1 if kind == "l1" else 2, dim=1).double()
    return (v if kind == "l1" else v * v).cpu().numpy()


def _accumulate(graph: Graph, roles: tuple[str, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-class sums over every member slot with one of ``roles`` (both RepConv branches...), and
    whether each class had any such member. Classes are indexed by ``graph.class_ids``."""
    total = np.zeros(graph.n_classes, np.float64)
    seen = np.zeros(graph.n_classes, bool)
    for key, slot in graph.slots.items():
        if slot.role not in roles:
            continue
        cls = graph.class_ids[graph.slot_roots[key]]
        vals = _per_index(get_tensor(graph.model, slot.param), slot.dim, kind)
        np.add.at(total, cls, vals)
        seen[cls] = True
    return total, seen


def all_scores(graph: Graph, criterion: str = "l2", seed: int = 0) -> dict[str, np.ndarray]:
    """Importance of each removable channel of every group (group id -> array of ``channels``)."""
    if criterion not in CRITERIA:
        raise InvalidConfigError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    out: dict[str, np.ndarray] = {}
    if criterion == "random":
        for g in graph.groups:
            rng = np.random.default_rng([int(seed), zlib.crc32(g.id.encode())])
            out[g.id] = rng.random(g.channels)
        return out
    filters = ("out", "dw")
    kind = "l2" if criterion == "l2" else "l1"
    base, _ = _accumulate(graph, filters, kind)
    if kind == "l2":
        base = np.sqrt(base)
    if criterion in ("bn_gamma", "bn_gamma_l1"):
        gamma, has_bn = _accumulate(graph, ("bn_weight",), "l1")
        # groups without batch norm fall back to the filter norm
        base = np.where(has_bn, gamma if criterion == "bn_gamma" else gamma * base, base)
    for g in graph.groups:
        out[g.id] = base[graph.class_offset[g.id]:graph.class_offset[g.id] + g.channels]
    return out


def group_scores(graph: Graph, group: ChannelGroup, criterion: str = "l2", seed: int = 0) -> np.ndarray:
    """Importance of each removable channel of ``group`` (length ``group.channels``)."""
    return all_scores(graph, criterion, seed)[group.id]
