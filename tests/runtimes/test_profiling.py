"""LatencyStats math, warm-up/timing stop rules, the unstable flag and the bootstrap CI of the median."""

import math
import time

import numpy as np
import pytest

from edgeprune.errors import InvalidConfigError
from edgeprune.runtimes.profiling import (
    LatencyStats,
    ProfileConfig,
    median_ci,
    pick_attempt,
    profile_callable,
    time_runs,
    warm_up,
)


def test_stats_on_known_samples():
    s = LatencyStats.from_samples(list(range(1, 101)))
    assert s.n == 100
    assert s.median_ms == pytest.approx(50.5)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.p10_ms == pytest.approx(10.9)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert (s.min_ms, s.max_ms) == (1.0, 100.0)
    assert s.cov == pytest.approx(np.std(np.arange(1, 101), ddof=1) / 50.5)
    assert s.includes == "inference" and not s.unstable


def test_stats_single_sample_and_empty():
    s = LatencyStats.from_samples([2.0])
    assert s.cov == 0.0 and s.median_ms == 2.0
    with pytest.raises(InvalidConfigError):
        LatencyStats.from_samples([])


def test_stats_dict_round_trip():
    s = LatencyStats.from_samples([1.0, 2.0, 4.0], includes="pre+inference+post", env={"threads": 2})
    back = LatencyStats.from_dict(s.to_dict())
    assert back == s
    assert "samples_ms" not in s.to_dict(samples=False)


def test_config_validation_and_overrides():
    c = ProfileConfig.make(None, min_runs=5)
    assert c.min_runs == 5 and c.warmup_runs == 10
    assert ProfileConfig.make({"min_s": 0.0}).min_s == 0.0
    with pytest.raises(InvalidConfigError, match="unknown profile settings"):
        ProfileConfig.make(None, min_run=5)
    with pytest.raises(InvalidConfigError):
        ProfileConfig(min_runs=10, max_runs=5)
    with pytest.raises(InvalidConfigError):
        ProfileConfig(includes="everything")


def test_warm_up_needs_count_and_time():
    calls = []
    assert warm_up(lambda: calls.append(1), ProfileConfig(warmup_runs=5, warmup_s=0.0)) == 5
    calls.clear()
    n = warm_up(lambda: time.sleep(0.002), ProfileConfig(warmup_runs=2, warmup_s=0.03))
    assert n >= 10  # 2 runs were not enough: it kept going until 30 ms had passed


def test_timed_runs_need_count_and_time():
    assert len(time_runs(lambda: None, ProfileConfig(min_runs=7, min_s=0.0))) == 7
    samples = time_runs(lambda: time.sleep(0.002), ProfileConfig(min_runs=3, min_s=0.05))
    assert len(samples) >= 15 and sum(samples) >= 50.0
    assert len(time_runs(lambda: None, ProfileConfig(min_runs=3, min_s=10.0, max_runs=20))) == 20


def test_noisy_callable_is_repeated_and_flagged_unstable():
    state = {"i": 0}

    def noisy():  # alternating 0.2 ms / 4 ms: CoV near 1
        state["i"] += 1
        time.sleep(0.004 if state["i"] % 2 else 0.0002)

    cfg = ProfileConfig(warmup_runs=1, warmup_s=0, min_runs=10, min_s=0, max_repeats=3, cov_threshold=0.1)
    s = profile_callable(noisy, cfg)
    assert s.unstable
    assert s.attempts == 3 and len(s.attempt_covs) == 3
    assert s.cov == min(s.attempt_covs) and s.cov > 0.1


def test_stable_measurement_stops_after_first_attempt():
    s = profile_callable(
        lambda: time.sleep(0.001), warmup_runs=1, warmup_s=0, min_runs=5, min_s=0, cov_threshold=10.0
    )
    assert not s.unstable and s.attempts == 1 and s.n == 5 and s.median_ms >= 1.0


def test_pick_attempt_keeps_least_noisy_and_flags():
    a = LatencyStats.from_samples([1, 1, 1, 5])
    b = LatencyStats.from_samples([1, 1.05, 1, 1.02])
    best = pick_attempt([a, b], threshold=0.1)
    assert best is b and not best.unstable and best.attempts == 2
    assert pick_attempt([a], threshold=0.1).unstable


def test_median_ci_covers_the_median_and_narrows():
    rng = np.random.default_rng(1)
    small = rng.lognormal(1.0, 0.3, 40)
    big = rng.lognormal(1.0, 0.3, 4000)
    lo, hi = median_ci(small)
    assert lo <= np.median(small) <= hi
    lo2, hi2 = median_ci(big)
    assert lo2 <= np.median(big) <= hi2
    assert (hi2 - lo2) < (hi - lo)
    # the true median of lognormal(1, .3) is e; a 95% CI from 4000 samples should contain it
    assert lo2 <= math.e <= hi2
    assert median_ci(small, seed=3) == median_ci(small, seed=3)
    with pytest.raises(InvalidConfigError):
        median_ci([], conf=0.9)
    with pytest.raises(InvalidConfigError):
        median_ci([1.0], conf=1.5)
