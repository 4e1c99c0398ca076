"""Iterative sensitivity pruning (the paper's loop), automated and resumable.

``sensitivity`` measures each prunable group pruned alone; ``select`` applies the paper's score
rule; ``iterative_prune`` repeats sensitivity -> select -> prune -> fine-tune -> evaluate, saving
every iteration as a candidate in a run folder it can resume from.
"""

from edgeprune.iterative.candidates import CandidateRecord, format_table, list_candidates, load_candidate
from edgeprune.iterative.executors import (
    Executor,
    LocalProcessExecutor,
    SerialExecutor,
    default_executor,
    executor_from_config,
)
from edgeprune.iterative.loop import IterativeResult, iterative_prune
from edgeprune.iterative.options import LatencyOptions, PruneOptions, StopCriteria
from edgeprune.iterative.per_target import PerTargetResult, per_target_prune
from edgeprune.iterative.ray_executor import RayExecutor  # imports ray only when used
from edgeprune.iterative.selection import SelectionConfig, score_rows, select
from edgeprune.iterative.sensitivity import sensitivity
from edgeprune.iterative.table import SensitivityRow, SensitivityTable

__all__ = [
    "CandidateRecord",
    "Executor",
    "IterativeResult",
    "LatencyOptions",
    "LocalProcessExecutor",
    "PerTargetResult",
    "PruneOptions",
    "RayExecutor",
    "SelectionConfig",
    "SensitivityRow",
    "SensitivityTable",
    "SerialExecutor",
    "StopCriteria",
    "default_executor",
    "executor_from_config",
    "format_table",
    "iterative_prune",
    "list_candidates",
    "load_candidate",
    "per_target_prune",
    "score_rows",
    "select",
    "sensitivity",
]
