"""The latency model on a fake target with a known step-function latency: predictions, cache, snapping."""

from __future__ import annotations

import copy

import latency_helpers as fake
import pytest
import test_iterative_tinynet as tiny
import torch

import edgeprune as ep
from edgeprune import latency
from edgeprune.export import _torch_export

X = torch.zeros(1, 3, tiny.IMG, tiny.IMG)
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny convs run faster on one shared core


def build(tmp_path, prof=None, model=None):
    return latency.build_latency_model(model or tiny.tiny_model(), X, prof or fake.FakeProfiler(),
                                       cache_dir=tmp_path / "cache", progress=False)


def group_of(graph, module: str) -> str:
    return next(g.id for g in graph.groups if any(m == module for m in g.modules))


def test_prediction_matches_the_targets_step_function(tmp_path):
    lm = build(tmp_path)
    names = [la.name for la in lm.layers]
    assert names == ["stem.0", "a.0", "b.0", "c.0", "d.0", "e.0", "head"]  # execution order
    assert [(la.height, la.width) for la in lm.layers][:4] == [(32, 32), (16, 16), (16, 16), (16, 16)]
    # conv cost is a product of staircases: the factorised model with a fixed part is exact on the grid
    assert lm.alpha == pytest.approx(1.0) and lm.fixed_ms == pytest.approx(fake.FIXED_MS)
    model = ep.prune(tiny.tiny_model(), X, sparsity=0.25, round_to=8)
    path = tmp_path / "p.onnx"
    _torch_export(model.eval(), X, path, 17)
    truth = fake.onnx_ms(path)[0] + fake.FIXED_MS
    assert lm.predict_onnx(path) == pytest.approx(truth, rel=1e-6)
    assert lm.predict_model(model) == pytest.approx(truth, rel=1e-6)
    assert lm.predict() > truth  # the unpruned model is slower than the pruned one on this target
    # round trip through JSON keeps every prediction
    again = latency.LatencyModel.from_dict(lm.to_dict())
    assert again.predict_model(model) == pytest.approx(truth, rel=1e-9)


def test_predicted_removal_equals_the_pruned_model(tmp_path):
    lm = build(tmp_path)
    model = tiny.tiny_model()
    graph = ep.trace(model, X)
    gid = group_of(graph, "c.0")
    cur = latency.channels_of_model(model, lm.layers)
    pred = lm.predict_removal(cur, graph, {gid: 16})
    pruned = ep.apply(copy.deepcopy(model), ep.plan(ep.trace(copy.deepcopy(model), X), rates={gid: 0.5}))
    after = latency.channels_after(lm.layers, cur, graph, {gid: 16})
    assert latency.channels_of_model(pruned, lm.layers) == after
    assert pred == pytest.approx(lm.predict_model(pruned))


def test_cache_hit_and_invalidation(tmp_path):
    p1 = fake.FakeProfiler()
    first = build(tmp_path, p1)
    assert p1.calls, "the first build measures"
    p2 = fake.FakeProfiler()
    second = build(tmp_path, p2)
    assert p2.calls == [] and second.to_dict() == first.to_dict()  # all from the cache
    for changed in (fake.FakeProfiler(version="2.0"), fake.FakeProfiler(threads=1)):
        build(tmp_path, changed)
        assert changed.calls, "a new runtime version or thread count re-measures"
    other_size = fake.FakeProfiler()
    latency.build_latency_model(tiny.tiny_model(), torch.zeros(1, 3, 64, 64), other_size,
                                cache_dir=tmp_path / "cache", progress=False)
    assert other_size.calls, "another input size re-measures"
    files = sorted((tmp_path / "cache").glob("*.json"))
    assert len(files) == 4
    # a file whose stored key does not match its name is not trusted
    first_key = latency.LatencyCache(tmp_path / "cache", first.key, "fake").path
    victim = next(f for f in files if f == first_key)
    victim.write_text(victim.read_text().replace('"runtime_version": "1.0"', '"runtime_version": "0.9"'))
    p3 = fake.FakeProfiler()
    build(tmp_path, p3)
    assert p3.calls


def test_snapping_keeps_the_cheapest_step(tmp_path):
    lm = build(tmp_path)
    model = tiny.tiny_model()
    graph = ep.trace(model, X)
    cur = latency.channels_of_model(model, lm.layers)
    gid = group_of(graph, "c.0")  # 32 channels: 17..32 cost the same on the fake target
    curve = lm.group_curve(cur, graph, gid, [8, 16, 24, 32])
    assert curve[24] == pytest.approx(curve[32]) and curve[16] < curve[24]
    rates, moved = latency.snap_rates([lm], graph, cur, {gid: 0.25}, round_to=8)
    assert rates[gid] == 0.0 and moved[gid] == [24, 32]  # 24 buys nothing over 32: keep all
    rates, moved = latency.snap_rates([lm], graph, cur, {gid: 0.5}, round_to=8)
    assert rates[gid] == 0.5 and gid not in moved  # 16 is a step down: kept
    assert ep.pruning.kept_channels(32, rates[gid], 1) == 16


def test_snap_count_on_a_measured_staircase():
    # ONNX Runtime, conv3x3 pair 64 -> c -> 64 at 80x80 (DESIGN.md): 57-59 and 61-63 are slower than 60
    curve = {56: 3.90, 57: 4.45, 58: 4.46, 59: 4.48, 60: 3.96, 61: 4.54, 62: 4.60, 63: 4.64, 64: 3.97}
    assert latency.on_steps(curve) == [56, 60, 64]
    assert latency.on_steps(curve, tol_ms=0.02) == [56, 64]
    assert latency.snap_count(curve, 58, 64) == 64  # 60 and 64 both run faster than 58: keep all
    assert latency.snap_count(curve, 56, 64) == 56  # a real step down: kept
    assert latency.snap_count(curve, 60, 62) == 60  # never above the group's current count
    for keep in curve:  # the snapped count is never predicted slower, and sits on a step
        for tol in (0.0, 0.05):
            s = latency.snap_count(curve, keep, 64, tol)
            assert s >= keep and curve[s] <= curve[keep] + tol
            assert s in latency.on_steps({c: v for c, v in curve.items() if c >= keep}, tol)


@pytest.mark.parametrize("truth", [
    lambda s: 2.0 + 0.5 * s,  # a fixed part (launch overheads, the head): the linear fit
    lambda s: 0.03 * s ** 1.4,  # the model shrinks faster than its layers (caches): the power law
])
def test_calibration_reproduces_a_law_of_either_kind(truth):
    from edgeprune.latency.model import _fit

    alpha, fixed, beta = _fit([(30.0, truth(30.0)), (12.0, truth(12.0))])
    for s in (5.0, 20.0, 45.0):  # points the fit never saw
        assert fixed + alpha * s ** beta == pytest.approx(truth(s), rel=1e-9)


def test_calibration_falls_back_to_a_scale_on_odd_points():
    from edgeprune.latency.model import _fit

    assert _fit([(10.0, 5.0)]) == (0.5, 0.0, 1.0)
    assert _fit([(10.0, 5.0), (10.0, 4.0)]) == (0.5, 0.0, 1.0)  # same layer sum: no slope to fit
    assert _fit([(10.0, 5.0), (5.0, 0.01)]) == (0.5, 0.0, 1.0)  # beta ~9: noise, not a law
    lm = latency.LatencyModel.from_dict({"key": {}, "layers": [], "tables": [], "alpha": 1, "fixed_ms": 0})
    assert lm.beta == 1.0  # models cached before the power law read as linear


def test_accuracy_and_rank_correlation():
    assert latency.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert latency.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert latency.spearman([1, 2], [1, 2]) is None
    acc = latency.accuracy([1.1, 2.0, None, 2.7], [1.0, 2.0, 5.0, 3.0])
    assert acc["n"] == 3 and acc["median_rel_error"] == pytest.approx(0.1)
    assert acc["max_rel_error"] == pytest.approx(0.1) and acc["spearman"] == pytest.approx(1.0)


def test_loop_with_latency_selection_stops_at_the_knee(tmp_path):
    from edgeprune.fileio import read_json
    from edgeprune.iterative import SelectionConfig, load_candidate

    lm = build(tmp_path)
    lm.name = "fake"
    res = tiny.run_tiny(tmp_path / "run", 8, latency_models=[lm], until_knee=True,
                        selection=SelectionConfig(k=4, n_params=0, n_flops=0, n_latency=2))
    cands = res.candidates
    assert "knee" in res.stop_reason or "stopped improving" in res.stop_reason
    assert 2 <= len(cands) <= 8
    for c in cands:  # the prediction recorded per candidate is the fake target's true latency
        model = load_candidate(tmp_path / "run", c.iteration, tiny.tiny_model)
        path = tmp_path / f"c{c.iteration}.onnx"
        _torch_export(model.eval(), X, path, 17)
        assert c.predicted_ms["fake"] == pytest.approx(fake.onnx_ms(path)[0] + fake.FIXED_MS, rel=1e-6)
    ms = [c.predicted_ms["fake"] for c in cands]
    assert all(b < a for a, b in zip(ms, ms[1:])), ms  # every step chosen by latency saved latency
    sel = read_json(tmp_path / "run" / "iter_01" / "selection.json")
    assert sel["explain"] and all(e["latency_saved"] > 0 for e in sel["explain"])
    if "stopped improving" in res.stop_reason:  # the last step bought at most the knee tolerance
        assert ms[-2] - ms[-1] <= 0.03 * ms[-2]
        return
    # else the selection came back empty: no group at any rate saves latency on the step function
    last = load_candidate(tmp_path / "run", cands[-1].iteration, tiny.tiny_model)
    graph = ep.trace(last, X)
    cur = latency.channels_of_model(last, lm.layers)
    now = lm.predict(cur)
    for g in graph.prunable_groups:
        for rate in (0.25, 0.5, 0.75):
            n = g.channels - ep.pruning.kept_channels(g.channels, rate, 8)
            if n > 0:
                assert lm.predict_removal(cur, graph, {g.id: n}) >= now - 1e-9


def test_snapping_in_the_loop_never_prunes_a_flat_step(tmp_path):
    from edgeprune.fileio import read_json
    from edgeprune.iterative import SelectionConfig

    lm = build(tmp_path)
    lm.name = "fake"
    tiny.run_tiny(tmp_path / "run", 1, latency_models=[lm],
                  selection=SelectionConfig(k=4, n_params=3, n_flops=2))
    sel = read_json(tmp_path / "run" / "iter_01" / "selection.json")
    model = tiny.tiny_model()
    graph = ep.trace(model, X)
    cur = latency.channels_of_model(model, lm.layers)
    assert sel["plan_round_to"] == 1 and set(sel["rates"]) <= set(sel["rates_selected"])
    for gid, rate in sel["rates_selected"].items():  # groups whose planned count bought nothing stay whole
        keep = ep.pruning.kept_channels(graph.group(gid).channels, rate, 8)
        saved = lm.predict() - lm.predict_removal(cur, graph, {gid: graph.group(gid).channels - keep})
        assert (gid in sel["rates"]) == (saved > 1e-9), (gid, saved)


def test_prune_config_latency_section(tmp_path):
    from edgeprune.errors import InvalidConfigError
    from edgeprune.iterative.config import validate

    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    raw = {"model": "demo", "data": {"train": "train", "val": "val"}, "evaluator": {"kind": "detection"},
           "finetune": {"kind": "labeled"}, "targets": {"iterations": 20}, "run_dir": "run",
           "selection": {"n_latency": 3},
           "latency": {"targets": [{"runtime": "onnxruntime", "threads": 2}], "until_knee": True}}
    cfg = validate(raw, tmp_path)
    assert cfg.section("latency")["until_knee"] is True
    with pytest.raises(InvalidConfigError, match="latency.targets"):
        validate({**raw, "latency": {"until_knee": True}}, tmp_path)
    with pytest.raises(InvalidConfigError, match="latency.knee_tau"):
        validate({**raw, "latency": {**raw["latency"], "knee_tau": 2}}, tmp_path)
    with pytest.raises(InvalidConfigError, match="unknown field"):
        validate({**raw, "latency": {"targets": [{"runtime": "onnxruntime", "bogus": 1}]}}, tmp_path)
    with pytest.raises(InvalidConfigError, match="targets"):
        validate({**raw, "latency": {}, "selection": {}, "targets": {}}, tmp_path)
