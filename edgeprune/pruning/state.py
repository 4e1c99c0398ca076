"""Bookkeeping shared by the tracer and the op handlers: channel elements, producers, slots.

Every channel a layer creates is one *element*. Ops that force two channels to be removed together
(residual add, depthwise conv, equal-size split pieces) union their elements. A *slot* is one
dimension of one parameter or buffer whose indices map to elements; surgery slices slots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Producer:
    """A contiguous block of fresh elements created by one layer output (or a frozen source)."""

    pid: int
    name: str
    start: int
    size: int
    frozen: str = ""  # non-empty: reason these channels can never be removed


@dataclass
class Slot:
    """One dimension of a parameter/buffer; ``labels[i]`` is the element of index ``i``."""

    param: str
    dim: int
    role: str
    labels: np.ndarray


@dataclass
class SizeAttr:
    """A module attribute holding a split size / slice bound, updated after pruning.

    ``pieces`` are label arrays: kind ``int`` takes the kept count of ``pieces[0]``; kind ``seq``
    takes the kept count of every piece (same container type as ``old``).
    """

    module: str
    attr: str
    kind: str
    old: object
    pieces: list[np.ndarray]


@dataclass
class Issue:
    """An op edgeprune does not understand touched the channels of these producers."""

    op: str
    module: str
    detail: str
    producers: set[int]


@dataclass
class TraceState:
    """Elements, unions, producers, slots and issues collected during one forward pass."""

    parent: list[int] = field(default_factory=list)
    producers: list[Producer] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    slots: dict[tuple[str, int], Slot] = field(default_factory=dict)
    size_attrs: list[SizeAttr] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    outputs: set[int] = field(default_factory=set)  # producers reaching a model output

    # -- elements ---------------------------------------------------------------------------------
    def new_producer(self, name: str, size: int, frozen: str = "") -> np.ndarray:
        """Allocate ``size`` fresh elements; return their labels."""
        start = len(self.parent)
        self.parent.extend(range(start, start + size))
        self.producers.append(Producer(len(self.producers), name, start, size, frozen))
        self.starts.append(start)
        return np.arange(start, start + size, dtype=np.int64)

    def find(self, e: int) -> int:
        parent = self.parent
        while parent[e] != e:
            parent[e] = parent[parent[e]]
            e = parent[e]
        return e

    def union(self, a: np.ndarray, b: np.ndarray) -> None:
        """Couple element ``a[i]`` with ``b[i]`` for every i (same lengths)."""
        for x, y in zip(a.tolist(), b.tolist()):
            rx, ry = self.find(x), self.find(y)
            if rx != ry:
                # keep the older element as root so class order follows creation order
                if rx < ry:
                    self.parent[ry] = rx
                else:
                    self.parent[rx] = ry

    def producers_of(self, labels: np.ndarray) -> set[int]:
        """Ids of the producers owning these elements."""
        if labels.size == 0:
            return set()
        idx = np.searchsorted(np.asarray(self.starts), np.unique(labels), side="right") - 1
        return set(idx.tolist())

    # -- slots ------------------------------------------------------------------------------------
    def bind(self, param: str, dim: int, role: str, labels: np.ndarray) -> bool:
        """Map ``param``'s ``dim`` onto ``labels``; a second binding (module reuse) couples them."""
        key = (param, dim)
        slot = self.slots.get(key)
        if slot is None:
            self.slots[key] = Slot(param, dim, role, labels)
            return True
        if slot.labels.shape != labels.shape:
            return False
        self.union(slot.labels, labels)
        return True

    def produce(self, param: str, dim: int, role: str, size: int, name: str) -> np.ndarray:
        """Labels of the channels a layer's weight creates along ``dim`` (reused on a second call)."""
        slot = self.slots.get((param, dim))
        if slot is not None and slot.labels.size == size:
            return slot.labels
        labels = self.new_producer(name, size)
        self.slots[(param, dim)] = Slot(param, dim, role, labels)
        return labels

    def freeze(self, labels: np.ndarray, reason: str) -> None:
        """Mark the channels' producers as never prunable (a safe, understood limitation)."""
        for pid in self.producers_of(labels):
            if not self.producers[pid].frozen:
                self.producers[pid].frozen = reason
