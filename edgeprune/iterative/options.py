"""The settings of ``iterative_prune``, grouped: when to stop, how each iteration prunes, latency in the loop.

Each group is a small frozen dataclass that checks itself; ``iterative_prune`` also takes their
fields as plain keywords (``iterations=3``, ``until_knee=True``, ...), see ``KEYWORDS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeprune.errors import InvalidConfigError
from edgeprune.iterative.candidates import CandidateRecord
from edgeprune.iterative.selection import SelectionConfig
from edgeprune.iterative.sensitivity import DEFAULT_RATES


@dataclass(frozen=True)
class StopCriteria:
    """When the loop stops: after ``iterations``, at a sparsity, or below ``metric_floor`` (any set)."""

    iterations: int | None = None
    param_sparsity: float | None = None  # fraction of parameters removed
    flops_sparsity: float | None = None
    metric_floor: float | None = None  # the final candidate is the last one at or above it

    def check(self) -> None:
        """Refuse values no run could meet."""
        it = self.iterations
        if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 1):
            raise InvalidConfigError(f"iterations must be a positive integer, got {it!r}")
        for name in ("param_sparsity", "flops_sparsity"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 < v < 1.0):
                raise InvalidConfigError(f"target_{name} must be a fraction between 0 and 1, got {v!r}")
        if self.metric_floor is not None and not isinstance(self.metric_floor, (int, float)):
            raise InvalidConfigError(f"metric_floor must be a number, got {self.metric_floor!r}")

    def is_empty(self) -> bool:
        return all(v is None for v in (self.iterations, self.param_sparsity, self.flops_sparsity,
                                       self.metric_floor))

    def reason(self, c: CandidateRecord, knee: str | None = None) -> str | None:
        """Why the loop stops after candidate ``c`` (``knee``: the latency knee's reason), or None."""
        if self.metric_floor is not None and c.metric < self.metric_floor:
            return f"metric {c.metric:.4g} fell below the floor {self.metric_floor}"
        if knee is not None:
            return knee
        if self.iterations is not None and c.iteration >= self.iterations:
            return f"reached {self.iterations} iterations"
        if self.param_sparsity is not None and c.param_sparsity >= self.param_sparsity:
            return f"parameter sparsity {c.param_sparsity:.1%} reached {self.param_sparsity:.1%}"
        if self.flops_sparsity is not None and c.flops_sparsity >= self.flops_sparsity:
            return f"FLOPs sparsity {c.flops_sparsity:.1%} reached {self.flops_sparsity:.1%}"
        return None


@dataclass(frozen=True)
class PruneOptions:
    """How each iteration prunes and fine-tunes (all part of the run's fingerprint)."""

    finetune_steps: int = 200
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    rates: tuple[float, ...] = DEFAULT_RATES
    criterion: str = "l2"
    round_to: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        # ``selection=None`` means the default, as in earlier releases; rates are stored as floats
        object.__setattr__(self, "selection", self.selection or SelectionConfig())
        object.__setattr__(self, "rates", tuple(float(r) for r in self.rates))

    def check(self) -> None:
        steps = self.finetune_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
            raise InvalidConfigError(f"finetune_steps must be an integer >= 0, got {steps!r}")


@dataclass(frozen=True)
class LatencyOptions:
    """Latency in the loop: ``models`` (one ``LatencyModel`` per target) rank, snap and may stop the loop.

    ``snap`` keeps pruned channel counts on the targets' measured steps; ``until_knee`` stops once
    every target's predicted latency improved by at most ``knee_tau`` in one iteration.
    """

    models: Sequence[Any] = ()
    until_knee: bool = False
    knee_tau: float = 0.03
    snap: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models or ()))

    def check(self, selection: SelectionConfig) -> None:
        if self.until_knee and not self.models:
            raise InvalidConfigError("until_knee needs latency_models (edgeprune.latency.build_latency_model "
                                     "per target)")
        if len({lm.name for lm in self.models}) != len(self.models):
            raise InvalidConfigError("latency models need distinct names (one per target)")
        if selection.n_latency and not self.models:
            raise InvalidConfigError("selection.n_latency needs latency_models")

    def knee_reason(self, c: CandidateRecord, prev: CandidateRecord | None) -> str | None:
        """With ``until_knee``: why predicted latency says the knee is reached after ``c``, else None."""
        if not self.until_knee or prev is None or not c.predicted_ms or not prev.predicted_ms:
            return None
        tau, before = float(self.knee_tau), prev.predicted_ms
        gains = {t: (before[t] - ms) / before[t] for t, ms in c.predicted_ms.items() if before.get(t)}
        if gains and all(g <= tau for g in gains.values()):
            return ("predicted latency stopped improving on every target (last step: "
                    + ", ".join(f"{t} {-g:+.1%}" for t, g in gains.items()) + f"; knee tolerance {tau:g})")
        return None


# iterative_prune's keyword shorthand: keyword -> field, per option object
KEYWORDS = {
    "stop": {"iterations": "iterations", "target_param_sparsity": "param_sparsity",
             "target_flops_sparsity": "flops_sparsity", "metric_floor": "metric_floor"},
    "prune": {k: k for k in ("finetune_steps", "selection", "rates", "criterion", "round_to", "seed")},
    "latency": {"latency_models": "models", **{k: k for k in ("until_knee", "knee_tau", "snap")}},
}
