"""The channel-dependency graph: groups of channels that must be removed together."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from edgeprune.errors import InvalidConfigError, InvalidPlanError, UnsupportedOperationError
from edgeprune.pruning.state import SizeAttr, Slot, TraceState
from edgeprune.pruning.tracer import run_traced


@dataclass(frozen=True)
class Member:
    """One parameter dimension touched by a group: ``size`` of its indices belong to the group."""

    param: str
    dim: int
    role: str  # out, out_bias, in, dw, bn_weight, bn_bias, bn_stat, param
    size: int


@dataclass
class ChannelGroup:
    """Channels removed together. ``channels`` counts removable units (coupled channels count once)."""

    id: str
    channels: int
    members: list[Member]
    prunable: bool
    reason: str = ""
    modules: list[str] = field(default_factory=list)  # layers whose filters form the group
    roots: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)


class Graph:
    """Channel groups of one traced model; ``plan()`` reads it, ``apply()`` does not need it."""

    def __init__(self, model: nn.Module, groups: list[ChannelGroup], slots: dict[tuple[str, int], Slot],
                 slot_roots: dict[tuple[str, int], np.ndarray], size_attrs: list[SizeAttr],
                 roots: np.ndarray) -> None:
        self.model = model
        self.groups = groups
        self.slots = slots
        self.slot_roots = slot_roots
        self.size_attrs = size_attrs
        self.roots = roots  # element -> class root
        self._by_id = {g.id: g for g in groups}
        # global class index of every root (classes of a group are contiguous, in group order)
        self.class_ids = np.full(roots.size, -1, np.int64)
        self.class_offset: dict[str, int] = {}
        offset = 0
        for g in groups:
            self.class_offset[g.id] = offset
            self.class_ids[g.roots] = np.arange(offset, offset + g.channels)
            offset += g.channels
        self.n_classes = offset

    def group(self, group_id: str) -> ChannelGroup:
        """The group with this id; InvalidPlanError if there is none."""
        try:
            return self._by_id[group_id]
        except KeyError:
            raise InvalidPlanError(f"no channel group '{group_id}' in this graph") from None

    @property
    def prunable_groups(self) -> list[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def summary(self) -> str:
        """A table of groups: id, channels, prunable or why not, members."""
        lines = [f"{'group':40s} {'ch':>6s}  status / members"]
        for g in self.groups:
            status = "prunable" if g.prunable else f"fixed ({g.reason})"
            lines.append(f"{g.id:40s} {g.channels:6d}  {status}")
            for m in g.members:
                lines.append(f"{'':40s} {'':6s}    {m.role:9s} {m.param}[dim {m.dim}] x{m.size}")
        n = len(self.prunable_groups)
        lines.append(f"{len(self.groups)} groups, {n} prunable, "
                     f"{sum(g.channels for g in self.prunable_groups)} prunable channels")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:
        return f"Graph({len(self.groups)} groups, {len(self.prunable_groups)} prunable)"


def trace(model: nn.Module, example_inputs: Any, exclude: Iterable[str] = ()) -> Graph:
    """Trace one forward pass of ``model`` and build its channel-dependency graph.

    Raises UnsupportedOperationError when an op edgeprune does not understand touches the channels
    of a group that could otherwise be pruned (exclude such groups by module name to proceed).
    """
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    tracer = run_traced(model, example_inputs)
    graph = build_graph(model, tracer.state, exclude)
    check_exclude(graph, exclude)  # a name matching nothing is a typo, not a silent no-op
    return graph


def _dsu_find(parent: list[int], x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


def build_graph(model: nn.Module, st: TraceState, exclude: tuple[str, ...]) -> Graph:
    """Turn element unions into groups, classify them, and raise on unresolved issues."""
    n_el = len(st.parent)
    roots = np.fromiter((st.find(e) for e in range(n_el)), dtype=np.int64, count=n_el)
    sizes = [p.size for p in st.producers]
    elem_prod = np.repeat(np.arange(len(st.producers)), sizes)
    # producers whose elements were coupled form one group
    pparent = list(range(len(st.producers)))
    moved = np.nonzero(roots != np.arange(n_el))[0]
    pairs = set(zip(elem_prod[moved].tolist(), elem_prod[roots[moved]].tolist()))
    for a, b in pairs:
        ra, rb = _dsu_find(pparent, a), _dsu_find(pparent, b)
        if ra != rb:
            pparent[max(ra, rb)] = min(ra, rb)
    gof = [_dsu_find(pparent, p) for p in range(len(st.producers))]
    by_root: dict[int, list[int]] = {}
    for p, g in enumerate(gof):
        by_root.setdefault(g, []).append(p)

    slot_roots = {k: roots[s.labels] for k, s in st.slots.items()}
    members_of: dict[int, list[Member]] = {}
    prod_of_root = elem_prod  # a root is an element, so elem_prod maps it to its producer
    for key, s in st.slots.items():
        r = slot_roots[key]
        gs, counts = np.unique(np.asarray(gof)[prod_of_root[r]], return_counts=True)
        for g, c in zip(gs.tolist(), counts.tolist()):
            members_of.setdefault(g, []).append(Member(s.param, s.dim, s.role, int(c)))

    groups: list[ChannelGroup] = []
    used_ids: set[str] = set()
    errors: list[UnsupportedOperationError] = []
    group_of_pid: dict[int, ChannelGroup] = {}
    for g_root in sorted(by_root):
        pids = by_root[g_root]
        els = np.concatenate([np.arange(st.producers[p].start, st.producers[p].start + st.producers[p].size)
                              for p in pids])
        cls_roots = _ordered_unique(roots[els])
        names = [st.producers[p].name for p in pids]
        gid = names[0] or "model"
        k = 1
        while gid in used_ids:
            k += 1
            gid = f"{names[0]}#{k}"
        used_ids.add(gid)
        reason = ""
        frozen = [st.producers[p].frozen for p in pids if st.producers[p].frozen]
        if frozen:
            reason = frozen[0]
        elif any(p in st.outputs for p in pids):
            reason = "reaches a model output"
        elif any(_matches(n, exclude) for n in names):
            reason = "excluded"
        elif not members_of.get(g_root):
            reason = "no parameters"
        grp = ChannelGroup(gid, int(cls_roots.size), members_of.get(g_root, []), not reason, reason,
                           names, cls_roots)
        groups.append(grp)
        for p in pids:
            group_of_pid[p] = grp
    for issue in st.issues:
        for p in sorted(issue.producers):
            grp = group_of_pid[p]
            if grp.prunable:
                errors.append(UnsupportedOperationError(
                    issue.op, issue.module or "<model>",
                    f"{issue.detail + '; ' if issue.detail else ''}it touches the channels of group "
                    f"'{grp.id}' (pass exclude=['{grp.id}'] to leave that group unpruned)"))
                break
    if errors:
        raise errors[0]
    return Graph(model, groups, st.slots, slot_roots, st.size_attrs, roots)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in patterns)


def _ordered_unique(a: np.ndarray) -> np.ndarray:
    _, first = np.unique(a, return_index=True)
    return a[np.sort(first)]


def check_exclude(graph: Graph, exclude: Any) -> tuple[str, ...]:
    """``exclude`` as a tuple of names; InvalidConfigError naming close matches for a name that
    matches no group id and no module (a typo would otherwise leave the group pruned silently)."""
    if isinstance(exclude, str):
        exclude = (exclude,)
    try:
        names = tuple(exclude)
    except TypeError:
        raise InvalidConfigError(f"exclude must be a list of module names, got {exclude!r}") from None
    known: set[str] = set()
    for g in graph.groups:
        known.add(g.id)
        for m in g.modules:
            parts = m.split(".")
            known.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    for name in names:
        if not isinstance(name, str):
            raise InvalidConfigError(f"exclude entries must be module names (str), got {name!r}")
        if name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else \
                "; graph.summary() lists the groups and their modules"
            raise InvalidConfigError(f"exclude={name!r} matches no channel group or module of the "
                                     f"model{hint}")
    return names
