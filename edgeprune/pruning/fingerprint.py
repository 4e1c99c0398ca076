"""The dataflow fingerprint of a traced model: which channel of which parameter is coupled to which.

Two models with the same parameter names but a different forward (another concat order, another
consumer) get different fingerprints, so a plan made on one is refused on the other. Weights and
which groups are prunable do not enter it: only the structure that surgery relies on.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from torch import nn

from edgeprune.pruning.graph import Graph, build_graph
from edgeprune.pruning.tracer import run_traced


def dataflow_fingerprint(graph: Graph) -> str:
    """SHA-256 of every slot's channel classes and every split-size attribute of ``graph``."""
    slots = []
    for key in sorted(graph.slots, key=lambda k: (k[0], k[1])):
        s = graph.slots[key]
        slots.append([s.param, s.dim, s.role, graph.class_ids[graph.slot_roots[key]].tolist()])
    attrs = [[sa.module, sa.attr, sa.kind, [graph.class_ids[graph.roots[p]].tolist() for p in sa.pieces]]
             for sa in graph.size_attrs]
    groups = [[g.id, g.channels] for g in graph.groups]
    text = json.dumps({"slots": slots, "size_attrs": attrs, "groups": groups}, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def trace_fingerprint(model: nn.Module, example_inputs: Any) -> str:
    """Fingerprint of ``model`` traced on ``example_inputs``, whatever its groups' pruning status.

    Ops edgeprune does not understand are ignored here: they only decide which groups ``plan()``
    may prune, and a plan touching such a group fails the output check anyway.
    """
    tracer = run_traced(model, example_inputs)
    tracer.state.issues = []
    return dataflow_fingerprint(build_graph(model, tracer.state, ()))


def fingerprint_of(obj: Any) -> str:
    """Cached fingerprint of a Graph (computed once per graph object)."""
    fp = getattr(obj, "_edgeprune_fingerprint", None)
    if fp is None:
        fp = dataflow_fingerprint(obj)
        obj._edgeprune_fingerprint = fp
    return fp
