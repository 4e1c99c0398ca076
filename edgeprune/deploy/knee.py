"""The knee rule: per target, the least sparse candidate past which latency stops improving.

Candidates are sorted by sparsity (fraction of prunable filters removed). For each candidate ``i``
let ``best(i)`` be the candidate with the lowest median latency among the *eligible* candidates at
least as sparse as ``i`` (``i`` included). Candidate ``i`` is "within tolerance" when

    median(i) - median(best(i)) <= tol(i),   tol(i) = max(tau * median(i), noise(i, best(i)))

where ``noise`` is the half-width of a bootstrap confidence interval (default 95 %) of the
difference of the two medians, computed from the raw latency samples (0 when samples are too few
to say). The knee is the **least sparse eligible candidate within tolerance**: pruning further
buys at most ``tau`` (3 % by default) or nothing the measurement can tell apart from noise. The
most sparse eligible candidate is always within tolerance of itself, so a knee exists whenever a
candidate is eligible.

Eligibility is the accuracy floor: a candidate whose metric is below ``accuracy_floor`` (absolute),
or below ``accuracy_floor_rel`` x the unpruned (least sparse) candidate's metric, is not eligible
and neither chosen nor used as a reference. When a candidate carries a confidence interval of its
metric (``metric_interval``, a bootstrap over validation images), the floor compares against the
interval: only a candidate whose whole interval lies below the floor (measurably below) is excluded.
A candidate without a metric is eligible only when no floor is set.

Inversions (``find_inversions``): a candidate slower than a less sparse one beyond the measured
noise (and beyond ``margin`` x the faster median), or slower than the unpruned model. Latency is a
staircase in channel count, so such a candidate usually has channel counts just above a multiple
of the target's SIMD/tensor-core width; the report names that rounding.

Pure functions on numbers: no runtime, no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from edgeprune.errors import EdgepruneError

DEFAULT_TAU = 0.03
DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP = 1000


@dataclass
class KneePoint:
    """One candidate as the knee rule sees it: id, sparsity, latency samples (ms), optional metric."""

    id: str
    sparsity: float
    samples_ms: Sequence[float]
    metric: float | None = None
    metric_interval: tuple[float, float] | None = None  # (low, high) of the metric, if measured

    @property
    def median_ms(self) -> float:
        return float(np.median(np.asarray(self.samples_ms, dtype=np.float64)))


@dataclass
class KneeResult:
    """The knee of one target. Lists are in sparsity order (``ids[k]`` is candidate ``k``)."""

    index: int | None  # position in sparsity order; None when no candidate is eligible
    candidate_id: str | None
    reason: str
    ids: list[str]
    sparsity: list[float]
    medians_ms: list[float]
    eligible: list[bool]
    ineligible_reason: list[str]
    best_index: list[int | None]  # best eligible candidate at least as sparse, per candidate
    tolerance_ms: list[float | None]  # tolerance used per candidate (None if not eligible)
    within: list[bool]
    tau: float
    inversions: list[Inversion] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inversions"] = [asdict(i) for i in self.inversions]
        return d


@dataclass
class Inversion:
    """Candidate ``slower_id`` measured slower than ``faster_id`` although it is at least as sparse."""

    slower_id: str
    faster_id: str
    kind: str  # "less_sparse" (a less sparse candidate is faster) or "unpruned"
    slower_ms: float
    faster_ms: float
    delta_ms: float
    noise_ms: float

    def text(self) -> str:
        rel = self.delta_ms / self.faster_ms * 100 if self.faster_ms > 0 else float("nan")
        what = "the unpruned model" if self.kind == "unpruned" else f"less sparse '{self.faster_id}'"
        return (
            f"'{self.slower_id}' is slower than {what}: {self.slower_ms:.3f} vs {self.faster_ms:.3f} ms "
            f"(+{self.delta_ms:.3f} ms, +{rel:.1f} %, noise +/-{self.noise_ms:.3f} ms)"
        )


def median_diff_noise(
    a: Sequence[float],
    b: Sequence[float],
    confidence: float = DEFAULT_CONFIDENCE,
    n_boot: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
) -> float:
    """Half-width (ms) of a bootstrap CI of median(a) - median(b); 0 when either has < 3 samples."""
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.size < 3 or xb.size < 3:
        return 0.0
    if not 0 < confidence < 1:
        raise EdgepruneError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    ma = np.median(xa[rng.integers(0, xa.size, (n_boot, xa.size))], axis=1)
    mb = np.median(xb[rng.integers(0, xb.size, (n_boot, xb.size))], axis=1)
    lo, hi = np.quantile(ma - mb, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float((hi - lo) / 2)


def _eligibility(
    points: list[KneePoint], floor: float | None, floor_rel: float | None
) -> tuple[list[bool], list[str]]:
    ref = points[0].metric
    if floor_rel is not None and ref is None:
        raise EdgepruneError(
            f"a relative accuracy floor needs the unpruned candidate's metric; '{points[0].id}' has none"
        )
    thresholds = []
    if floor is not None:
        thresholds.append(("absolute floor", float(floor)))
    if floor_rel is not None:
        thresholds.append((f"{floor_rel:g} x unpruned {ref:.4f}", float(floor_rel) * float(ref)))
    eligible, why = [], []
    for p in points:
        if not thresholds:
            eligible.append(True)
            why.append("")
            continue
        if p.metric is None:
            eligible.append(False)
            why.append("no accuracy metric while an accuracy floor is set")
            continue
        top = p.metric if p.metric_interval is None else float(p.metric_interval[1])
        shown = f"{p.metric:.4f}" + ("" if p.metric_interval is None else f" (interval up to {top:.4f})")
        fails = [f"{shown} < {v:.4f} ({name})" for name, v in thresholds if top < v]
        eligible.append(not fails)
        why.append("accuracy " + "; ".join(fails) if fails else "")
    return eligible, why


def select_knee(
    points: Sequence[KneePoint],
    tau: float = DEFAULT_TAU,
    accuracy_floor: float | None = None,
    accuracy_floor_rel: float | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    inversion_margin: float = 0.01,
    seed: int = 0,
) -> KneeResult:
    """Apply the knee rule (see the module docstring) to one target's candidates."""
    if not points:
        raise EdgepruneError("the knee rule needs at least one candidate")
    if tau < 0:
        raise EdgepruneError(f"tau must be >= 0, got {tau}")
    for p in points:
        if len(p.samples_ms) == 0:
            raise EdgepruneError(f"candidate '{p.id}' has no latency samples")
    pts = sorted(points, key=lambda p: p.sparsity)
    med = [p.median_ms for p in pts]
    eligible, why = _eligibility(pts, accuracy_floor, accuracy_floor_rel)
    n = len(pts)
    best: list[int | None] = [None] * n
    cur: int | None = None
    for i in range(n - 1, -1, -1):  # running argmin of eligible medians from the sparse end
        if eligible[i] and (cur is None or med[i] < med[cur]):
            cur = i
        best[i] = cur
    tol: list[float | None] = [None] * n
    within = [False] * n
    for i in range(n):
        b = best[i]
        if not eligible[i] or b is None:
            continue
        noise = (
            0.0 if b == i else median_diff_noise(pts[i].samples_ms, pts[b].samples_ms, confidence, seed=seed)
        )
        tol[i] = max(tau * med[i], noise)
        within[i] = med[i] - med[b] <= tol[i]
    knee = next((i for i in range(n) if within[i]), None)
    inversions = find_inversions(pts, margin=inversion_margin, confidence=confidence, seed=seed)
    return KneeResult(
        index=knee,
        candidate_id=pts[knee].id if knee is not None else None,
        reason=_reason(pts, med, knee, best, tol, eligible, tau),
        ids=[p.id for p in pts],
        sparsity=[float(p.sparsity) for p in pts],
        medians_ms=med,
        eligible=eligible,
        ineligible_reason=why,
        best_index=best,
        tolerance_ms=tol,
        within=within,
        tau=float(tau),
        inversions=inversions,
    )


def _reason(pts, med, knee, best, tol, eligible, tau) -> str:
    if knee is None:
        return "no candidate meets the accuracy floor; no knee"
    b = best[knee]
    p = pts[knee]
    gain = med[knee] - med[b]
    text = (
        f"knee '{p.id}' (sparsity {p.sparsity:.3f}, median {med[knee]:.3f} ms): "
        f"the best eligible candidate at least as sparse is '{pts[b].id}' at {med[b]:.3f} ms, "
        f"{gain:.3f} ms faster <= tolerance {tol[knee]:.3f} ms "
        f"(max of tau {tau:g} x {med[knee]:.3f} ms and the measured noise of the difference)"
    )
    skipped = [i for i in range(knee) if eligible[i] and best[i] is not None and tol[i] is not None]
    if skipped:
        i = skipped[-1]
        text += (
            f"; the next less sparse eligible candidate '{pts[i].id}' ({med[i]:.3f} ms) is "
            f"{med[i] - med[best[i]]:.3f} ms slower than '{pts[best[i]].id}' > its tolerance {tol[i]:.3f} ms"
        )
    n_out = sum(not e for e in eligible)
    if n_out:
        text += f"; {n_out} candidate(s) below the accuracy floor were excluded"
    return text


def find_inversions(
    points: Sequence[KneePoint],
    margin: float = 0.01,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> list[Inversion]:
    """Candidates slower than a less sparse one (or the unpruned one) beyond noise and ``margin``.

    Each slower candidate is reported once, against the fastest less sparse candidate; a separate
    "unpruned" entry is added when it is also slower than the least sparse (unpruned) candidate.
    """
    pts = sorted(points, key=lambda p: p.sparsity)
    med = [p.median_ms for p in pts]
    out: list[Inversion] = []
    for j in range(1, len(pts)):
        if pts[j].sparsity <= pts[0].sparsity:
            continue  # as sparse as the reference: not a pruned candidate
        fastest = min(range(j), key=lambda k: med[k])  # fastest less sparse candidate
        refs = [fastest] if fastest == 0 else [fastest, 0]
        for ref in refs:
            delta = med[j] - med[ref]
            if delta <= margin * med[ref]:
                continue
            noise = median_diff_noise(pts[j].samples_ms, pts[ref].samples_ms, confidence, seed=seed)
            if delta > noise:
                kind = "unpruned" if ref == 0 else "less_sparse"
                out.append(Inversion(pts[j].id, pts[ref].id, kind, med[j], med[ref], delta, noise))
    return out
