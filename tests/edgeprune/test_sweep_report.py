"""The report writer on constructed measurements (no runtime involved)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sweep_helpers import conv_candidate

from edgeprune.deploy import SweepCandidate, SweepResult, Target, TargetResult
from edgeprune.deploy.knee import KneePoint, select_knee
from edgeprune.deploy.report import write_report
from edgeprune.deploy.report_markdown import markdown_table
from edgeprune.deploy.targets import inversion_advice
from edgeprune.runtimes.profiling import LatencyStats

PNG = b"\x89PNG\r\n\x1a\n"


def constructed(tmp_path, medians, widths, name="t1"):
    rng = np.random.default_rng(0)
    cands, stats = [], {}
    for k, (m, w) in enumerate(zip(medians, widths)):
        cid = f"iter_{k:02d}"
        onnx = conv_candidate(tmp_path / f"{cid}.onnx", w)
        cands.append(
            SweepCandidate(
                cid,
                sparsity=k / 10,
                onnx_path=onnx,
                params=1_000_000 - k * 100_000,
                flops=(10 - k) * 10**9,
                metrics={"mAP50-95": 0.5 - 0.01 * k},
                primary="mAP50-95",
            )
        )
        s = LatencyStats.from_samples(m + rng.normal(0, 0.02, 40))
        s.env = {"runtime_version": "9.9", "cpu_model": "TestCPU", "usable_cores": 2}
        stats[cid] = s
    target = Target(name, "onnxruntime", threads=2)
    knee = select_knee([KneePoint(c.id, c.sparsity, stats[c.id].samples_ms, c.metric) for c in cands])
    advice = {
        i.slower_id: inversion_advice(
            cands[[c.id for c in cands].index(i.slower_id)].onnx_path, target, cands[0].onnx_path
        )
        for i in knee.inversions
    }
    rec = {"runtime_version": "9.9", "measured": "side by side in one interleaved pass"}
    return SweepResult(tmp_path / "out", cands, {name: TargetResult(target, rec, stats, knee, advice)})


def test_report_files_table_and_inversion(tmp_path):
    # iter_03 (width 30: not a multiple of 8) is slower than iter_02: an inversion
    res = constructed(tmp_path, [10.0, 8.0, 6.0, 7.5, 5.0, 5.0], [64, 48, 40, 30, 24, 16])
    tr = res.targets["t1"]
    assert tr.knee.candidate_id == "iter_04"
    paths = write_report(res)
    md = Path(paths["markdown"]).read_text()
    assert "| **iter_04** |" in md and "**<- knee**" in md
    assert "onnxruntime 9.9, fp32, threads 2, on TestCPU" in md and "inference only" in md
    assert "'iter_03' is slower than less sparse 'iter_02'" in md
    assert "not multiples of 8 (e.g. 30)" in md and "round_to=8" in md
    assert "2.00x" in md  # iter_04 speedup 10 / 5
    rep = json.loads(Path(paths["json"]).read_text())
    rows = rep["targets"]["t1"]["rows"]
    assert [r["knee"] for r in rows] == [False, False, False, False, True, False]
    assert rows[3]["inverted"] and not rows[2]["inverted"]
    assert rows[4]["gflops"] == 6.0 and rows[4]["speedup"] > 1.9
    for p in paths["plots"]["t1"].values():
        assert Path(p).read_bytes()[:8] == PNG


def test_speedup_plot_for_several_targets(tmp_path):
    res = constructed(tmp_path, [10.0, 8.0, 6.0], [64, 48, 32], "a")
    other = constructed(tmp_path, [10.0, 9.9, 9.8], [64, 48, 32], "b")
    res.targets.update(other.targets)
    paths = write_report(res)
    assert Path(paths["plots"]["all"]["speedup"]).read_bytes()[:8] == PNG
    assert res.targets["a"].knee.candidate_id == "iter_02"
    assert res.targets["b"].knee.candidate_id == "iter_00"  # nothing to gain on target b
    assert "## Target `b`" in Path(paths["markdown"]).read_text()


def test_table_marks_below_floor(tmp_path):
    res = constructed(tmp_path, [10.0, 8.0, 6.0], [64, 48, 32])
    tr = res.targets["t1"]
    tr.knee = select_knee(
        [KneePoint(c.id, c.sparsity, tr.stats[c.id].samples_ms, c.metric) for c in res.candidates],
        accuracy_floor=0.495,
    )
    table = markdown_table(res, tr)
    assert table.count("below floor") == 2 and "**<- knee**" in table


def test_report_states_why_the_knee_agrees_or_differs(tmp_path):
    from edgeprune.deploy.report_markdown import across_targets

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    plateau = constructed(tmp_path / "a", [10.0, 8.0, 6.0, 5.95, 5.9], [64, 56, 48, 40, 32], name="flat")
    falling = constructed(tmp_path / "b", [10.0, 8.0, 6.0, 4.0, 2.0], [64, 56, 48, 40, 32], name="steep")
    assert plateau.targets["flat"].knee.candidate_id == "iter_02"
    assert falling.targets["steep"].knee.candidate_id == "iter_04"
    both = SweepResult(plateau.out_dir, plateau.candidates, {**plateau.targets, **falling.targets})
    text = "\n".join(across_targets(both))
    assert "The knee differs between targets: `flat` -> `iter_02`, `steep` -> `iter_04`" in text
    assert "more pruning buys no latency on this target" in text  # the plateau's reason
    assert "latency had not stopped improving" in text  # the steep curve's reason
    assert "The knee agrees on all 1 target(s): `iter_02`" in "\n".join(across_targets(plateau))
