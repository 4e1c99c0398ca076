"""Honest latency measurement: warm up, time enough runs, report robust statistics and say when the
numbers are noisy (CoV above a threshold) instead of hiding it. Pure numpy; torch-free.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np

from edgeprune.errors import InvalidConfigError

INCLUDES = ("inference", "pre+inference+post")


@dataclass(frozen=True)
class ProfileConfig:
    """How long to warm up and time. Warm-up and timing each stop only when BOTH count and time are met."""

    warmup_runs: int = 10
    warmup_s: float = 0.5
    min_runs: int = 30
    min_s: float = 2.0
    max_runs: int | None = 10_000
    cov_threshold: float = 0.1
    max_repeats: int = 3
    includes: str = "inference"

    def __post_init__(self) -> None:
        for name in ("warmup_runs", "warmup_s", "min_runs", "min_s", "cov_threshold", "max_repeats"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise InvalidConfigError(f"profile config: {name} must be a finite number, got {v!r}")
        if self.warmup_runs < 0 or self.min_runs < 1 or self.warmup_s < 0 or self.min_s < 0:
            raise InvalidConfigError(
                f"profile config: counts and seconds must be >= 0 (min_runs >= 1): {self}"
            )
        if self.max_runs is not None and self.max_runs < self.min_runs:
            raise InvalidConfigError(f"profile config: max_runs {self.max_runs} < min_runs {self.min_runs}")
        if self.max_repeats < 1 or self.cov_threshold <= 0:
            raise InvalidConfigError("profile config: max_repeats must be >= 1 and cov_threshold > 0")
        if self.includes not in INCLUDES:
            raise InvalidConfigError(
                f"profile config: includes must be one of {INCLUDES}, got {self.includes!r}"
            )

    @classmethod
    def make(cls, config: ProfileConfig | Mapping | None = None, **overrides: Any) -> ProfileConfig:
        """A config from None / a dict / a config, with keyword overrides; unknown fields are an error."""
        base = cls() if config is None else (config if isinstance(config, cls) else cls(**dict(config)))
        names = {f.name for f in fields(cls)}
        unknown = set(overrides) - names
        if unknown:
            raise InvalidConfigError(f"unknown profile settings {sorted(unknown)}; known: {sorted(names)}")
        return replace(base, **overrides) if overrides else base


@dataclass
class LatencyStats:
    """Latency statistics in milliseconds; ``samples_ms`` keeps the raw runs of the reported attempt."""

    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    cov: float
    n: int
    samples_ms: list[float] = field(default_factory=list)
    includes: str = "inference"
    unstable: bool = False
    attempts: int = 1
    attempt_covs: list[float] = field(default_factory=list)
    env: dict = field(default_factory=dict)

    @classmethod
    def from_samples(
        cls, samples_ms: Sequence[float], includes: str = "inference", **kw: Any
    ) -> LatencyStats:
        """Statistics of raw samples (ms). CoV = sample std / mean."""
        a = np.asarray(samples_ms, dtype=np.float64)
        if a.size == 0:
            raise InvalidConfigError("no latency samples")
        mean = float(a.mean())
        std = float(a.std(ddof=1)) if a.size > 1 else 0.0
        p10, p50, p90, p99 = (float(v) for v in np.percentile(a, [10, 50, 90, 99]))
        return cls(
            median_ms=p50,
            mean_ms=mean,
            p10_ms=p10,
            p90_ms=p90,
            p99_ms=p99,
            min_ms=float(a.min()),
            max_ms=float(a.max()),
            cov=std / mean if mean > 0 else 0.0,
            n=int(a.size),
            samples_ms=[float(v) for v in a],
            includes=includes,
            **kw,
        )

    def to_dict(self, samples: bool = True) -> dict:
        """JSON-able dict (``samples=False`` drops the raw samples)."""
        d = asdict(self)
        if not samples:
            d.pop("samples_ms")
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyStats:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def median_ci(self, conf: float = 0.95, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
        """Bootstrap confidence interval of the median of ``samples_ms``."""
        return median_ci(self.samples_ms, conf=conf, n_boot=n_boot, seed=seed)

    def summary(self) -> str:
        flag = "  UNSTABLE" if self.unstable else ""
        return (
            f"median {self.median_ms:.3f} ms  p90 {self.p90_ms:.3f}  p99 {self.p99_ms:.3f}  "
            f"cov {self.cov:.3f}  n {self.n}{flag}"
        )


def median_ci(
    samples: Sequence[float], conf: float = 0.95, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval (lo, hi) of the median of ``samples``."""
    a = np.asarray(samples, dtype=np.float64)
    if a.size == 0:
        raise InvalidConfigError("median_ci needs at least one sample")
    if not 0 < conf < 1:
        raise InvalidConfigError(f"conf must be in (0, 1), got {conf}")
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot)
    # chunked so a long run (many samples) never allocates n_boot x n at once
    chunk = max(1, 2_000_000 // a.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, a.size, size=(stop - start, a.size))
        medians[start:stop] = np.median(a[idx], axis=1)
    alpha = (1.0 - conf) / 2.0
    lo, hi = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def warm_up(fn: Callable[[], Any], config: ProfileConfig) -> int:
    """Call ``fn`` until both ``warmup_runs`` calls and ``warmup_s`` seconds are done; returns the count."""
    n, start = 0, time.perf_counter()
    while n < config.warmup_runs or time.perf_counter() - start < config.warmup_s:
        fn()
        n += 1
    return n


def time_runs(fn: Callable[[], Any], config: ProfileConfig) -> list[float]:
    """Timed calls (ms) until both ``min_runs`` and ``min_s`` are reached, or ``max_runs``."""
    samples: list[float] = []
    total_ns, min_ns = 0, int(config.min_s * 1e9)
    clock = time.perf_counter_ns
    while len(samples) < config.min_runs or total_ns < min_ns:
        if config.max_runs is not None and len(samples) >= config.max_runs:
            break
        t0 = clock()
        fn()
        dt = clock() - t0
        total_ns += dt
        samples.append(dt / 1e6)
    return samples


def pick_attempt(attempts: list[LatencyStats], threshold: float) -> LatencyStats:
    """The least noisy attempt, flagged unstable when even it exceeds ``threshold``; records all CoVs."""
    best = min(attempts, key=lambda s: s.cov)
    best.attempts = len(attempts)
    best.attempt_covs = [s.cov for s in attempts]
    best.unstable = best.cov > threshold
    return best


def profile_callable(
    fn: Callable[[], Any], config: ProfileConfig | None = None, **overrides: Any
) -> LatencyStats:
    """Warm up, then time ``fn``; if CoV > threshold, measure again (up to ``max_repeats``) and flag it."""
    config = ProfileConfig.make(config, **overrides)
    warm_up(fn, config)
    attempts: list[LatencyStats] = []
    for _ in range(config.max_repeats):
        attempts.append(LatencyStats.from_samples(time_runs(fn, config), includes=config.includes))
        if attempts[-1].cov <= config.cov_threshold:
            break
    return pick_attempt(attempts, config.cov_threshold)
