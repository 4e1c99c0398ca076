"""Predicted beside measured in the sweep report, and the latency model on a real local runtime."""

from __future__ import annotations

import json
from pathlib import Path

import latency_helpers as fake
import numpy as np
import pytest
import test_iterative_tinynet as tiny
import torch
from sweep_helpers import conv_candidate
from torch import nn

from edgeprune import latency
from edgeprune.deploy import SweepCandidate, sweep
from edgeprune.deploy.targets import target_from_config
from edgeprune.runtimes import get
from edgeprune.runtimes.profiling import ProfileConfig

FAST = {"warmup_runs": 2, "warmup_s": 0.0, "min_runs": 8, "min_s": 0.02, "max_repeats": 1}


class ThreeConv(nn.Module):
    """The torch twin of ``sweep_helpers.conv_candidate`` (same convs, same order)."""

    def __init__(self, width: int = 48, no: int = 7) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, width, 3, 2, 1)
        self.c2 = nn.Conv2d(width, width, 3, 1, 1)
        self.c3 = nn.Conv2d(width, no, 1)

    def forward(self, x):
        return self.c3(torch.relu(self.c2(torch.relu(self.c1(x)))))


def test_sweep_reports_predicted_beside_measured(tmp_path):
    lm = latency.build_latency_model(ThreeConv(), torch.zeros(1, 3, 32, 32), fake.FakeProfiler(),
                                     cache_dir=tmp_path / "cache", progress=False)
    widths = {"c0": 48, "c1": 32, "c2": 16}
    cands = [SweepCandidate(cid, sparsity=k / 4, onnx_path=conv_candidate(tmp_path / f"{cid}.onnx", w),
                            metrics={"m": 0.5}, primary="m") for k, (cid, w) in enumerate(widths.items())]
    res = sweep(cands, [{"name": "ort1", "runtime": "onnxruntime", "threads": 1}], tmp_path / "out",
                img_size=32, profile_config=FAST, bundles=False, latency_models={"ort1": lm})
    tr = res.targets["ort1"]
    truth = {c: fake.onnx_ms(tmp_path / f"{c}.onnx")[0] + fake.FIXED_MS for c in widths}
    scale = tr.stats["c0"].median_ms / truth["c0"]  # anchored on the unpruned candidate measured in the pass
    for cid in widths:  # the fake target's latency of each candidate, predicted from its ONNX file
        assert tr.prediction["raw_predicted_ms"][cid] == pytest.approx(truth[cid], rel=1e-6)
        assert tr.predicted[cid] == pytest.approx(truth[cid] * scale, rel=1e-6)
    rep = json.loads(Path(res.report["json"]).read_text())
    rows = rep["targets"]["ort1"]["rows"]
    assert [r["predicted_ms"] for r in rows] == pytest.approx([tr.predicted[c] for c in widths])
    acc = rep["targets"]["ort1"]["latency_model"]
    assert acc["anchor"] == "c0"
    err = [abs(tr.predicted[c] - tr.stats[c].median_ms) / tr.stats[c].median_ms for c in ("c1", "c2")]
    assert acc["n"] == 2 and acc["median_rel_error"] == pytest.approx(float(np.median(err)))
    assert acc["max_rel_error"] == pytest.approx(max(err))
    md = Path(res.report["markdown"]).read_text()
    assert "predicted ms" in md and "rank correlation" in md and "chosen from the measured medians" in md


def test_anchoring_scales_to_the_first_measured_candidate():
    from edgeprune.deploy.predicted import anchored

    pred, anchor = anchored({"a": None, "b": 4.0, "c": 2.0}, {"a": 9.0, "b": 6.0, "c": 2.5}, ["a", "b", "c"])
    assert anchor == "b" and pred == {"a": None, "b": pytest.approx(6.0), "c": pytest.approx(3.0)}
    assert anchored({"a": None}, {"a": 1.0}, ["a"]) == ({"a": None}, None)


def test_local_profiler_builds_and_reuses_a_model_on_onnxruntime(tmp_path):
    target = target_from_config({"runtime": "onnxruntime", "threads": 1})
    fast = ProfileConfig(warmup_runs=2, warmup_s=0.0, min_runs=5, min_s=0.01, max_repeats=1)
    prof = latency.LocalProfiler(target, micro=fast, whole=fast)
    x = torch.zeros(1, 3, tiny.IMG, tiny.IMG)
    lm = latency.build_latency_model(tiny.tiny_model(), x, prof, cache_dir=tmp_path, progress=False)
    assert lm.key["runtime_version"] == get("onnxruntime").version()
    assert lm.key["options"] == {"allow_spinning": False}  # measured as the sweep measures
    for layer, t in zip(lm.layers, lm.tables):
        assert t.base_ms > 0 and set(t.out_ratio) == set(latency.layers.grid(layer.cout, 8, ()))
        assert t.out_ratio[layer.cout] == pytest.approx(1.0) and all(v > 0 for v in t.out_ratio.values())
    assert set(lm.calibration) == {"unpruned", "pruned"} and lm.alpha > 0 and lm.fixed_ms >= 0
    assert lm.predict() > 0

    class Refuses:
        def key(self):
            return prof.key()

        def measure(self, files, whole=False):
            raise AssertionError("a cached model must not be measured again")

    again = latency.build_latency_model(tiny.tiny_model(), x, Refuses(), cache_dir=tmp_path, progress=False)
    assert again.predict() == pytest.approx(lm.predict())
