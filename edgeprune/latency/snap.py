"""Channel counts on a target's measured steps, and how well predictions match measurements.

Latency is a staircase in channel count, and not always a monotone one (ONNX Runtime runs 57-59
channels slower than 60). A count is *on a step* when no larger count is predicted as fast (within
``tol_ms``): keeping 58 channels where 60 or 64 run as fast spends accuracy and buys nothing.
``snap_count`` moves a planned count up to the largest count (at most the current one) predicted no
slower than the planned one, so a group keeps as many channels as the latency it pays for allows,
and all of them when pruning it buys nothing on the target. A snapped count is never predicted slower
than the planned one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgeprune.latency.model import LatencyModel


def on_steps(curve: Mapping[int, float], tol_ms: float = 0.0) -> list[int]:
    """Counts that no larger count matches in latency (within ``tol_ms``), ascending: the step tops."""
    counts = sorted(curve)
    return [c for k, c in enumerate(counts) if all(curve[d] > curve[c] + tol_ms for d in counts[k + 1:])]


def snap_count(curve: Mapping[int, float], keep: int, current: int, tol_ms: float = 0.0) -> int:
    """The count to keep instead of ``keep`` (of ``current``): the largest count in ``[keep, current]``
    predicted no slower than ``keep`` (within ``tol_ms``); ``keep`` when it is not on the curve."""
    if keep not in curve:
        return keep
    limit = curve[keep] + tol_ms
    return max(c for c in curve if keep <= c <= current and curve[c] <= limit)


def step_counts(channels: int, multiple: int) -> list[int]:
    """Counts a group may keep: multiples of ``multiple`` up to ``channels``, and ``channels``."""
    if channels <= multiple:
        return [channels]
    return sorted({*range(multiple, channels + 1, multiple), channels})


def snap_rates(models: Sequence[LatencyModel], graph: Any, current: Sequence[tuple[int, int]],
               rates: Mapping[str, float], round_to: int = 1, tol: float = 0.001) -> tuple[dict, dict]:
    """Rates whose kept counts sit on the targets' steps; returns ``(rates, {group: [planned, snapped]})``.

    With several targets the curve is the sum of their relative latencies. ``tol`` is relative to the
    predicted latency of the current model. The returned rates give the snapped counts exactly with
    ``round_to=1``.
    """
    from edgeprune.pruning.planner import kept_channels

    out, moved = {}, {}
    for gid, rate in rates.items():
        c = graph.group(gid).channels
        keep = kept_channels(c, rate, round_to)
        counts = sorted({*step_counts(c, max(1, models[0].multiple if models else round_to)), keep})
        curve = dict.fromkeys(counts, 0.0)
        for lm in models:
            now = lm.predict(current)
            for k, v in lm.group_curve(current, graph, gid, counts).items():
                curve[k] += v / now
        snapped = snap_count(curve, keep, c, tol * len(models)) if models else keep
        out[gid] = (c - snapped) / c
        if snapped != keep:
            moved[gid] = [keep, snapped]
    return out, moved


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation (average ranks for ties); None for fewer than 3 points or no spread."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if x.size < 3 or x.size != y.size:
        return None

    def ranks(v: np.ndarray) -> np.ndarray:
        order = np.argsort(v, kind="mergesort")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=float)
        for val in np.unique(v):  # ties share their average rank
            idx = v == val
            r[idx] = r[idx].mean()
        return r

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def accuracy(predicted: Sequence[float | None], measured: Sequence[float]) -> dict:
    """Median and max relative error of predicted vs measured ms, and their rank correlation."""
    pairs = [(p, m) for p, m in zip(predicted, measured) if p is not None and m > 0]
    if not pairs:
        return {"n": 0, "median_rel_error": None, "max_rel_error": None, "spearman": None}
    err = [abs(p - m) / m for p, m in pairs]
    return {"n": len(pairs), "median_rel_error": float(np.median(err)), "max_rel_error": float(max(err)),
            "spearman": spearman([p for p, _ in pairs], [m for _, m in pairs])}
