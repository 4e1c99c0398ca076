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

__all__ = [
    "CRITERIA", "ChannelGroup", "Graph", "Member", "PruningPlan", "all_scores", "apply", "check_forward",
    "group_scores", "kept_channels",
    "plan", "prune", "trace",
]


def prune(model: nn.Module, example_inputs: Any, sparsity: float = 0.5, **plan_kwargs: Any) -> nn.Module:
    """Trace, plan and apply in one call; prunes ``model`` in place and returns it."""
    graph = trace(model, example_inputs, exclude=plan_kwargs.get("exclude", ()))
    if "rates" in plan_kwargs:
        the_plan = plan(graph, **plan_kwargs)
    else:
        the_plan = plan(graph, sparsity=sparsity, **plan_kwargs)
    apply(model, the_plan)
    check_forward(model, example_inputs)
    return model
