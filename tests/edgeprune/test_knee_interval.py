"""The accuracy floor compares against a candidate's confidence interval, not only its point value."""

from __future__ import annotations

from edgeprune.deploy.candidate_files import SweepCandidate, metric_interval
from edgeprune.deploy.knee import KneePoint, select_knee


def _pts(intervals):
    meds = [10.0, 8.0, 6.0, 5.0]
    acc = [0.60, 0.55, 0.45, 0.40]
    rows = zip(meds, acc, intervals)
    return [KneePoint(f"c{k}", 0.1 * k, [m] * 20, a, iv) for k, (m, a, iv) in enumerate(rows)]


def test_floor_excludes_only_candidates_measurably_below_it():
    # floor 0.5: c2 (0.45) has an interval reaching 0.52 -> cannot be said to be below; c3's ends at 0.47
    r = select_knee(_pts([None, (0.5, 0.6), (0.38, 0.52), (0.33, 0.47)]), accuracy_floor=0.5)
    assert r.eligible == [True, True, True, False]
    assert "interval up to 0.4700" in r.ineligible_reason[3]
    assert r.candidate_id == "c2"
    # without intervals the point values decide
    r = select_knee(_pts([None] * 4), accuracy_floor=0.5)
    assert r.eligible == [True, True, False, False] and r.candidate_id == "c1"


def test_interval_is_read_from_the_candidate_metrics():
    c = SweepCandidate("a", 0.1, metrics={"mAP50-95": 0.3, "mAP50-95_low": 0.25, "mAP50-95_high": 0.34},
                  primary="mAP50-95")
    assert metric_interval(c) == (0.25, 0.34)
    assert metric_interval(SweepCandidate("b", 0.1, metrics={"mAP50-95": 0.3}, primary="mAP50-95")) is None
