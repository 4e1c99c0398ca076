"""Knee refinement on a constructed latency curve, and interpolated channel counts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.deploy.knee import KneePoint, select_knee
from edgeprune.deploy.refine import FRACTIONS, MAX_EXTRA, bracket, interpolated_counts, refine_knee

TRUE_KNEE = 0.55


def curve(s: float) -> float:
    """Latency falls linearly until sparsity 0.55, then stays flat (the fixed costs)."""
    return 10.0 - 10.0 * min(s, TRUE_KNEE)


def point(name: str, s: float, noise: float = 0.01) -> KneePoint:
    rng = np.random.default_rng(int(s * 1000))
    return KneePoint(name, s, list(curve(s) * (1 + noise * rng.standard_normal(40))), metric=1 - s / 2)


def test_refinement_locates_the_knee_between_coarse_candidates():
    coarse = [point("c0", 0.0), point("c1", 0.4), point("c2", 0.8)]
    knee = select_knee(coarse, tau=0.03)
    assert knee.candidate_id == "c2"  # coarse: c1 is far slower than c2, so the knee shows at 0.8
    a, b = bracket(knee)
    assert (knee.ids[a], knee.ids[b]) == ("c1", "c2")
    fr = FRACTIONS
    assert len(fr) + 2 <= MAX_EXTRA  # the refined points and the two coarse ones re-measured
    refined = [point(f"r{t}", 0.4 + t * 0.4) for t in fr]
    res = refine_knee([coarse[1], coarse[2]], refined, tau=0.03)
    s = res.sparsity[res.index]
    assert s == pytest.approx(0.6)  # the first refined point on the flat part
    # located within max(3 %, noise) in latency of the true knee, and no sparser than the coarse one
    assert curve(s) <= curve(TRUE_KNEE) * 1.03 and s < 0.8


def test_bracket_needs_a_less_sparse_eligible_candidate():
    pts = [point("c0", 0.0), point("c1", 0.7)]
    assert bracket(select_knee(pts, tau=0.03)) == (0, 1)
    flat = [KneePoint("a", 0.0, [5.0] * 5), KneePoint("b", 0.5, [5.0] * 5)]
    assert bracket(select_knee(flat, tau=0.03)) is None  # the unpruned model is the knee: nothing between


def test_interpolated_counts_stay_between_and_on_the_multiple():
    a, b = {"g1": 64, "g2": 32, "g3": 16}, {"g1": 16, "g2": 32, "g3": 8}
    half = interpolated_counts(a, b, 0.5, multiple=8)
    assert half == {"g1": 40, "g2": 32, "g3": 16}  # g3 (16, two multiples) rounds to a multiple of 8
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        c = interpolated_counts(a, b, t, multiple=8)
        assert all(b[g] <= c[g] <= a[g] for g in a)
        assert all(c[g] % 8 == 0 for g in a)
    assert interpolated_counts(a, b, 1.0) == b and interpolated_counts(a, b, 0.0) == a


@pytest.mark.slow
def test_refine_target_measures_interpolated_plans_side_by_side(tmp_path):
    import copy

    import torch

    import edgeprune as ep
    from edgeprune.deploy import SweepCandidate, SweepResult, TargetResult
    from edgeprune.deploy.refine import refine_target, refinement_lines
    from edgeprune.deploy.targets import target_from_config

    torch.manual_seed(0)
    base = ep.models.yolov7_tiny(num_classes=2).eval()
    x = torch.zeros(1, 3, 64, 64)
    pruned = ep.prune(copy.deepcopy(base), x, sparsity=0.5, round_to=8).eval()
    params = [ep.count_params(m) for m in (base, pruned)]
    cands = [SweepCandidate("iter_00", 0.0, model=base, params=params[0], metrics={"m": 0.5}, primary="m"),
             SweepCandidate("iter_01", 1 - params[1] / params[0], model=pruned, params=params[1],
                            metrics={"m": 0.4}, primary="m")]
    from edgeprune.deploy.candidate_files import export_candidates

    export_candidates(cands, tmp_path, (64, 64), x)
    knee = select_knee([KneePoint("iter_00", 0.0, [10.0] * 5, 0.5),
                        KneePoint("iter_01", cands[1].sparsity, [5.0] * 5, 0.4)], tau=0.03)
    target = target_from_config({"runtime": "onnxruntime", "threads": 1})
    fast = {"warmup_runs": 1, "warmup_s": 0.0, "min_runs": 5, "min_s": 0.01, "max_repeats": 1}
    tr = TargetResult(target, {"key": {"profile": fast}}, {}, knee)
    rec = refine_target(SweepResult(tmp_path, cands, {target.name: tr}), tr, x)
    assert rec["between"] == ["iter_00", "iter_01"] and rec["extra_compiles"] <= MAX_EXTRA
    refined = [p for p in rec["points"] if p["refined"]]
    assert len(refined) == len(FRACTIONS)
    s = [p["sparsity"] for p in rec["points"]]
    assert s == sorted(s) and all(0.0 < p["sparsity"] < cands[1].sparsity for p in refined)
    assert all(p["median_ms"] > 0 for p in rec["points"]) and rec["knee"] in {p["id"] for p in rec["points"]}
    assert all(p["metric"] == 0.4 for p in refined)  # assumed: the worse neighbour (no evaluator given)
    tr.refined = rec
    md = "\n".join(refinement_lines(tr))
    assert "refined knee" in md and "coarse" in md and "refined" in md
