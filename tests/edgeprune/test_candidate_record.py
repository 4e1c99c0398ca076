"""Candidate records: one schema written by the loop and read by the sweep; option objects and keywords."""

from __future__ import annotations

import json

import pytest

from edgeprune.deploy import KneeOptions, sweep
from edgeprune.deploy.candidate_files import candidates_from_run
from edgeprune.errors import InvalidConfigError
from edgeprune.iterative import (
    CandidateRecord,
    LatencyOptions,
    PruneOptions,
    SelectionConfig,
    StopCriteria,
    iterative_prune,
    list_candidates,
)


def _record(**kw) -> CandidateRecord:
    base = dict(iteration=2, params=600, flops=9000, param_sparsity=0.4, flops_sparsity=0.1,
                metrics={"mAP50": 0.7, "mAP50-95": 0.5}, primary="mAP50-95", metric=0.5,
                plan_sha256="ab" * 32, seconds={"finetune": 1.5})
    return CandidateRecord(**{**base, **kw})


def _write_run(run_dir, rows):
    for row in rows:
        d = run_dir / f"iter_{row['iteration']:02d}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(row))


def test_record_round_trips_and_summary_keeps_what_the_sweep_needs():
    rec = _record(predicted_ms={"cpu": 3.5})
    assert CandidateRecord.from_dict(json.loads(json.dumps(rec.to_dict()))) == rec
    summary = rec.to_dict(summary=True)
    assert summary["primary"] == "mAP50-95" and summary["predicted_ms"] == {"cpu": 3.5}
    assert "seconds" not in summary and "selected" not in summary
    assert "predicted_ms" not in _record().to_dict()  # no latency models: no key, as runs always wrote


def test_older_runs_without_primary_are_read_and_swept_with_the_right_metric(tmp_path):
    # metrics.json as earlier releases wrote it by hand or without "primary": the metric equal to
    # "metric" is the primary one, even when it is not the first in "metrics"
    rows = [{"iteration": k, "params": 1000 - 400 * k, "flops": 10**4, "param_sparsity": 0.4 * k,
             "flops_sparsity": 0.0, "metric": 0.5 - 0.1 * k,
             "metrics": {"mAP50": 0.9, "mAP50-95": 0.5 - 0.1 * k}} for k in (0, 1)]
    _write_run(tmp_path / "run", rows)
    recs = list_candidates(tmp_path / "run")
    assert [r.primary for r in recs] == ["mAP50-95", "mAP50-95"]
    assert [r.iteration for r in recs] == [0, 1] and recs[1].param_sparsity == pytest.approx(0.4)
    cands = candidates_from_run(tmp_path / "run", model_factory=None)
    assert [c.id for c in cands] == ["iter_00", "iter_01"]
    assert [c.metric for c in cands] == pytest.approx([0.5, 0.4])
    assert cands[1].sparsity == pytest.approx(0.4) and cands[1].params == 600
    with pytest.raises(InvalidConfigError, match="needs model_factory"):
        cands[1].model()  # loaded only when exported, and only with the unpruned model


def test_a_record_missing_required_facts_is_refused_naming_the_file_and_fix(tmp_path):
    _write_run(tmp_path / "run", [{"iteration": 0, "params": 10, "metrics": {"m": 1.0}}])
    with pytest.raises(InvalidConfigError, match=r"iter_00/metrics.json lacks flops, param_sparsity, "
                                                 r"flops_sparsity.*rerun"):
        list_candidates(tmp_path / "run")


def test_stop_criteria_precedence_and_latency_knee():
    prev, cur = _record(iteration=1, predicted_ms={"cpu": 10.0}), _record(predicted_ms={"cpu": 9.8})
    knee = LatencyOptions(models=(), until_knee=True, knee_tau=0.03).knee_reason(cur, prev)
    assert knee is not None and "cpu -2.0%" in knee  # 2 % gain <= 3 % tolerance
    assert LatencyOptions(until_knee=True, knee_tau=0.01).knee_reason(cur, prev) is None
    assert StopCriteria(metric_floor=0.6).reason(cur, knee).startswith("metric 0.5 fell below")
    assert StopCriteria(iterations=5).reason(cur, knee) == knee
    assert StopCriteria(iterations=2).reason(cur) == "reached 2 iterations"
    assert StopCriteria(param_sparsity=0.5).reason(cur) is None
    assert "reached 30.0%" in StopCriteria(param_sparsity=0.3).reason(cur)
    with pytest.raises(InvalidConfigError, match="fraction"):
        StopCriteria(param_sparsity=1.5).check()
    assert PruneOptions(selection=None, rates=[1, 0.5]).rates == (1.0, 0.5)  # None: the default selection
    assert PruneOptions(selection=None).selection == SelectionConfig()


def test_option_objects_and_their_keywords_are_one_or_the_other(tmp_path):
    with pytest.raises(InvalidConfigError, match=r"StopCriteria\(...\) or its keywords iterations"):
        iterative_prune(None, None, None, None, run_dir=tmp_path / "a", stop=StopCriteria(1), iterations=2)
    with pytest.raises(TypeError, match=r"argument\(s\) iteration; option keywords: .*target_param_sparsity"):
        iterative_prune(None, None, None, None, run_dir=tmp_path / "b", iteration=2)
    with pytest.raises(InvalidConfigError, match="until_knee needs latency_models"):
        iterative_prune(None, None, None, None, run_dir=tmp_path / "c", until_knee=True)
    with pytest.raises(InvalidConfigError, match=r"KneeOptions\(...\) or its keywords tau"):
        sweep([], [], tmp_path / "d", knee=KneeOptions(), tau=0.1)


def test_knee_options_default_floor_and_the_stricter_floor():
    assert KneeOptions().for_candidates(None).accuracy_floor_rel is None  # no metrics: no floor
    assert KneeOptions().for_candidates(0.5).accuracy_floor_rel == 0.9
    assert KneeOptions(accuracy_floor_rel=0).for_candidates(0.5).accuracy_floor_rel == 0  # turned off
    assert KneeOptions(accuracy_floor=0.3, accuracy_floor_rel=0.9).floor(0.5) == pytest.approx(0.45)
    assert KneeOptions(accuracy_floor=0.3).floor(None) == 0.3
