"""Pruning core: trace a model into a channel-dependency graph, plan, and apply surgery."""

from __future__ import annotations

from typing import Any

from torch import nn

from edgeprune.pruning.graph import ChannelGroup, Graph, Member, trace
from edgeprune.pruning.importance import CRITERIA, all_scores, group_scores
from edgeprune.pruning.plan_io import PruningPlan
from edgeprune.pruning.planner import kept_channels, plan
from edgeprune.pruning.surgery import apply
from edgeprune.pruning.tracer import check_forward
from edgeprune.pruning.verify import TOLERANCE

__all__ = [
    "CRITERIA", "TOLERANCE", "ChannelGroup", "Graph", "Member", "PruningPlan", "all_scores", "apply",
    "check_forward",
    "group_scores", "kept_channels",
    "plan", "prune", "trace",
]


def prune(model: nn.Module, example_inputs: Any, sparsity: float = 0.5, *, verify: bool = True,
          **plan_kwargs: Any) -> nn.Module:
    """Trace, plan and apply in one call; prunes ``model`` in place and returns it.

    With ``verify=True`` (default) the prune is checked on ``example_inputs`` by the zeroed-channel
    output check (``PruneVerificationError``, model unchanged); ``verify=False`` skips it.
    """
    exclude = check_exclude_names(plan_kwargs.get("exclude", ()))
    graph = trace(model, example_inputs, exclude=exclude)
    if "rates" in plan_kwargs:
        the_plan = plan(graph, **plan_kwargs)
    else:
        the_plan = plan(graph, sparsity=sparsity, **plan_kwargs)
    apply(model, the_plan, example_inputs, verify=verify, graph=graph)
    if not verify:
        check_forward(model, example_inputs)
    return model


def check_exclude_names(exclude: Any) -> tuple[str, ...]:
    """``exclude`` as a tuple (a single name is accepted as a string)."""
    return (exclude,) if isinstance(exclude, str) else tuple(exclude)
