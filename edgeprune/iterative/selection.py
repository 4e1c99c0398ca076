"""Which groups to prune next, and how hard: the paper's score rule, as a pure function.

Rule (Pavlitska et al. 2024), made exact:
1. Eligible rows: the rate removes at least one channel and the metric is finite.
2. ``m = metric / baseline`` (``relative=True``; dividing by a constant does not change any ranking,
   it only keeps ``m ** k`` away from float underflow) or the raw metric (``relative=False``).
   ``param_score = params_removed * m**k``, ``flops_score = flops_removed * m**k`` and
   ``latency_score = latency_saved * m**k`` (latency saved on the targets, predicted by their latency
   models: ``edgeprune.latency``); negative metrics and negative savings count as 0.
3. Per group and per score, its best rate: the highest score; on a tie the smaller rate (it keeps
   more of the model). Groups whose best score is 0 are never chosen.
4. The ``n_params`` groups with the highest best param score, the ``n_flops`` groups with the
   highest best FLOPs score and the ``n_latency`` groups with the highest best latency score (ties:
   table order, i.e. model order).
5. Merge: the union of the lists, one rate per group. A group in several lists whose best rates
   differ gets the rate with the higher *normalised* score, ``score / (top score of that list)``;
   on an exact tie the smaller rate.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from edgeprune.errors import InvalidConfigError
from edgeprune.iterative.table import SensitivityRow, SensitivityTable


@dataclass(frozen=True)
class SelectionConfig:
    """Knobs of the selection rule (defaults from the paper)."""

    k: float = 20.0  # exponent on the metric: higher punishes metric loss harder
    n_params: int = 6  # groups chosen by the parameter score
    n_flops: int = 5  # groups chosen by the FLOPs score
    relative: bool = True  # divide the metric by the unpruned baseline before ** k
    n_latency: int = 0  # groups chosen by the latency score (needs latency models in the loop)

    def __post_init__(self) -> None:
        if not isinstance(self.k, (int, float)) or isinstance(self.k, bool) or self.k < 0:
            raise InvalidConfigError(f"selection.k must be a number >= 0, got {self.k!r}")
        for name in ("n_params", "n_flops", "n_latency"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidConfigError(f"selection.{name} must be an integer >= 0, got {v!r}")
        if self.n_params + self.n_flops + self.n_latency == 0:
            raise InvalidConfigError("selection.n_params + selection.n_flops + selection.n_latency must be "
                                     "at least 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.n_latency:  # runs made before the latency criterion keep their fingerprint
            d.pop("n_latency")
        return d


@dataclass(frozen=True)
class ScoredRow:
    """A sensitivity row with its scores."""

    group: str
    rate: float
    param_score: float
    flops_score: float
    latency_score: float = 0.0


def score_rows(table: SensitivityTable, config: SelectionConfig) -> list[ScoredRow]:
    """Both scores of every eligible row (rule steps 1-2), in table order."""
    base = table.baseline_metric
    out = []
    for r in table.rows:
        if r.removed <= 0 or not math.isfinite(r.metric):
            continue
        m = max(r.metric, 0.0)
        if config.relative and base > 0:
            m = m / base
        w = m ** config.k
        out.append(ScoredRow(r.group, r.rate, r.params_removed * w, r.flops_removed * w,
                             max(r.latency_saved, 0.0) * w))
    return out


def _best_per_group(scored: list[ScoredRow], attr: str) -> dict[str, tuple[float, float]]:
    """group -> (best score, its rate); ties go to the smaller rate (rule step 3)."""
    best: dict[str, tuple[float, float]] = {}
    for s in scored:
        score = getattr(s, attr)
        cur = best.get(s.group)
        if cur is None or score > cur[0] or (score == cur[0] and s.rate < cur[1]):
            best[s.group] = (score, s.rate)
    return best


def _top(best: dict[str, tuple[float, float]], n: int) -> list[str]:
    # sorted() is stable, so equal scores keep table (model) order.
    ranked = sorted((g for g, (score, _) in best.items() if score > 0), key=lambda g: -best[g][0])
    return ranked[:n]


def select(table: SensitivityTable, config: SelectionConfig | None = None) -> dict[str, float]:
    """Groups to prune in the next iteration, ``{group_id: rate}`` (see the module docstring)."""
    config = config or SelectionConfig()
    scored = score_rows(table, config)
    chosen: dict[str, tuple[float, float]] = {}  # group -> (rate, normalised score)
    for attr, n in (("param_score", config.n_params), ("flops_score", config.n_flops),
                    ("latency_score", config.n_latency)):
        best = _best_per_group(scored, attr)
        top = _top(best, n)
        for g in top:
            score, rate = best[g]
            cand = (rate, score / best[top[0]][0])
            cur = chosen.get(g)
            if cur is None or cand[1] > cur[1] or (cand[1] == cur[1] and cand[0] < cur[0]):
                chosen[g] = cand
    return {g: rate for g, (rate, _) in chosen.items()}


def explain(table: SensitivityTable, config: SelectionConfig, chosen: dict[str, float]) -> list[dict]:
    """JSON-able record of each chosen group: rate, scores, metric, removed params/FLOPs."""
    out = []
    for g, rate in chosen.items():
        r: SensitivityRow = table.row(g, rate)
        s = next(x for x in score_rows(table, config) if x.group == g and math.isclose(x.rate, rate))
        out.append({"group": g, "rate": rate, "removed": r.removed, "channels": r.channels,
                    "metric": r.metric, "params_removed": r.params_removed,
                    "flops_removed": r.flops_removed, "param_score": s.param_score,
                    "flops_score": s.flops_score, "latency_saved": r.latency_saved,
                    "latency_score": s.latency_score})
    return out
