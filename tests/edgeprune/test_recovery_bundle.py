"""A recovered pick is bundled with accuracy before/after, and the report states intervals and ties."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sweep_helpers import conv_candidate

from edgeprune.deploy import SweepCandidate, SweepResult, Target, TargetResult
from edgeprune.deploy.candidate_files import metric_interval
from edgeprune.deploy.knee import KneePoint, select_knee
from edgeprune.deploy.picks import bundle_picks
from edgeprune.deploy.report import write_report
from edgeprune.runtimes.profiling import LatencyStats


def _metrics(point, low, high):
    return {"mAP50-95": point, "mAP50-95_low": low, "mAP50-95_high": high}


def test_recovered_pick_is_bundled_with_before_and_after(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(10.0, 64, _metrics(0.30, 0.27, 0.33)), (6.0, 32, _metrics(0.28, 0.25, 0.31)),
            (6.0, 24, _metrics(0.20, 0.17, 0.23))]
    cands, stats = [], {}
    for k, (med, width, metrics) in enumerate(rows):
        cid = f"iter_{k:02d}"
        cands.append(SweepCandidate(cid, k / 10, conv_candidate(tmp_path / f"{cid}.onnx", width),
                                    params=10 - k, flops=10**9, metrics=metrics, primary="mAP50-95"))
        stats[cid] = LatencyStats.from_samples(med + rng.normal(0, 0.01, 30))
    pts = [KneePoint(c.id, c.sparsity, stats[c.id].samples_ms, c.metric, metric_interval(c)) for c in cands]
    knee = select_knee(pts, accuracy_floor=0.25)
    assert knee.candidate_id == "iter_01" and knee.eligible == [True, True, False]
    target = Target("ort", "onnxruntime", threads=1)
    rec = {"runtime_version": "x", "measured": "side by side", "candidates": {}}
    res = SweepResult(tmp_path / "out", cands, {"ort": TargetResult(target, rec, stats, knee)})

    calls = []
    after = _metrics(0.295, 0.265, 0.325)

    def hook(cand):
        calls.append(cand.id)
        onnx = conv_candidate(tmp_path / "rec.onnx", 32, seed=1)
        rc = SweepCandidate(f"{cand.id}-recovered", cand.sparsity, onnx, metrics=after, primary="mAP50-95")
        info = {"before": cand.metrics, "after": after, "best_step": 40, "stop_reason": "budget of 40 steps",
                "gain": {"point": 0.015, "low": 0.004, "high": 0.026, "distinguishable": True}}
        return rc, info

    bundle_picks(res, recovery=hook)
    assert calls == ["iter_01"]
    manifest = json.loads((tmp_path / "out" / "bundles" / "ort" / "manifest.json").read_text())
    acc = manifest["accuracy"]
    assert acc["metrics"]["mAP50-95"] == 0.295 and acc["before_recovery"]["mAP50-95"] == 0.28
    assert acc["recovery"]["best_step"] == 40
    # the bundled model is the recovered one, compiled for the target
    assert (tmp_path / "out" / "compiled" / "ort" / "iter_01-recovered" / "artifact.json").exists()

    text = Path(write_report(res)["markdown"]).read_text()
    assert "0.2800 [0.2500, 0.3100]" in text  # the interval in the table
    assert "Cannot be told apart" in text and "`iter_00` and `iter_01`" in text
    assert "`iter_01` and `iter_02`" not in text  # [0.25, 0.31] vs [0.17, 0.23]: told apart
    assert "Recovery fine-tune of the pick" in text and "a measurable gain" in text
