"""Side-by-side latency of several sessions, interleaved (A B, B A, ...) so that slow drifts of a noisy,
shared machine (other jobs, thermal, frequency) hit every candidate alike instead of the last one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Callable

from edgeprune.errors import InvalidConfigError
from edgeprune.runtimes.profiling import LatencyStats, ProfileConfig, pick_attempt, warm_up


class ComparisonResult(dict):
    """``dict`` name -> LatencyStats (first name = the baseline), plus ``ratio_to_first`` and settings."""

    def __init__(self, stats: dict[str, LatencyStats], batch: int, rotate: bool) -> None:
        super().__init__(stats)
        self.batch = batch
        self.rotate = rotate

    @property
    def ratio_to_first(self) -> dict[str, float]:
        """Median latency of each session divided by the first one's."""
        base = next(iter(self.values())).median_ms
        return {k: v.median_ms / base for k, v in self.items()}

    def to_dict(self, samples: bool = True) -> dict:
        return {
            "interleaved": {"batch": self.batch, "rotate": self.rotate},
            "ratio_to_first": self.ratio_to_first,
            "stats": {k: v.to_dict(samples=samples) for k, v in self.items()},
        }


def _per_session_feeds(sessions: Mapping[str, Any], feeds: Mapping) -> dict[str, Mapping]:
    # feeds keyed by session name (each value itself a feeds dict) -> per-session; else shared by all
    if feeds and set(feeds) == set(sessions) and all(isinstance(v, Mapping) for v in feeds.values()):
        return {k: feeds[k] for k in sessions}
    return {k: feeds for k in sessions}


def round_order(names: list[str], round_index: int, rotate: bool) -> list[str]:
    """The order of one round: rotated by one each round so no session is always first."""
    if not rotate or not names:
        return list(names)
    k = round_index % len(names)
    return names[k:] + names[:k]


def compare(
    sessions: Mapping[str, Any],
    feeds: Mapping,
    config: ProfileConfig | Mapping | None = None,
    batch: int = 3,
    rotate: bool = True,
    **overrides: Any,
) -> ComparisonResult:
    """Profile ``sessions`` together in interleaved rounds; ``feeds`` is shared or a dict name -> feeds.

    Each session is warmed up first (all of them, before any timing). Then every round runs each
    session ``batch`` times in turn, until every session has ``min_runs`` samples and ``min_s``
    seconds of timed runs. If any CoV exceeds the threshold the whole interleaved pass is repeated
    (up to ``max_repeats``); the least noisy attempt per session is reported and flagged if unstable.
    """
    if not sessions:
        raise InvalidConfigError("compare() needs at least one session")
    if batch < 1:
        raise InvalidConfigError(f"batch must be >= 1, got {batch}")
    config = ProfileConfig.make(config, **overrides)
    names = list(sessions)
    per = _per_session_feeds(sessions, feeds)
    fns: dict[str, Callable[[], Any]] = {n: sessions[n].bind(per[n]) for n in names}
    for n in names:
        warm_up(fns[n], config)
    attempts: dict[str, list[LatencyStats]] = {n: [] for n in names}
    for _ in range(config.max_repeats):
        samples = _interleaved_pass(fns, names, config, batch, rotate)
        for n in names:
            attempts[n].append(LatencyStats.from_samples(samples[n], includes=config.includes))
        if all(a[-1].cov <= config.cov_threshold for a in attempts.values()):
            break
    result = {}
    for n in names:
        stats = pick_attempt(attempts[n], config.cov_threshold)
        env = getattr(sessions[n], "environment", None)
        stats.env = env() if callable(env) else {}
        stats.env["measured_with"] = {"compare": names, "batch": batch, "rotate": rotate}
        result[n] = stats
    return ComparisonResult(result, batch, rotate)


def _interleaved_pass(
    fns: dict[str, Callable[[], Any]], names: list[str], config: ProfileConfig, batch: int, rotate: bool
) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {n: [] for n in names}
    spent = dict.fromkeys(names, 0)
    min_ns = int(config.min_s * 1e9)
    clock = time.perf_counter_ns
    r = 0

    def done(n: str) -> bool:
        if config.max_runs is not None and len(samples[n]) >= config.max_runs:
            return True
        return len(samples[n]) >= config.min_runs and spent[n] >= min_ns

    while not all(done(n) for n in names):
        for n in round_order(names, r, rotate):
            # a finished session keeps running with the others so the load stays the same for the rest
            for _ in range(batch):
                t0 = clock()
                fns[n]()
                dt = clock() - t0
                if config.max_runs is None or len(samples[n]) < config.max_runs:
                    samples[n].append(dt / 1e6)
                    spent[n] += dt
        r += 1
    return samples
