"""Per-target candidates: one latency-driven run per target (two fake targets with different steps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import latency_helpers as fake
import pytest
import test_iterative_tinynet as tiny
import torch

import edgeprune as ep
from edgeprune import latency
from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import read_json
from edgeprune.iterative import SelectionConfig, SerialExecutor, list_candidates, load_candidate
from edgeprune.iterative.per_target import MARKER, per_target_prune

X = torch.zeros(1, 3, tiny.IMG, tiny.IMG)
FAST = {"warmup_runs": 2, "warmup_s": 0.0, "min_runs": 8, "min_s": 0.02, "max_repeats": 1}
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the same arithmetic in every run


class DetTiny(tiny.TinyNet):
    """TinyNet with detector-shaped output rows [B, N, K], so that sweeps can export its candidates."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).flatten(2).transpose(1, 2)


def det_tiny() -> DetTiny:
    m = DetTiny()
    m.load_state_dict(tiny.tiny_model().state_dict())  # the seeded weights and BN statistics
    return m.eval()


def models(tmp_path):
    """Two fake targets: 'coarse' steps every 16 channels (TinyNet's 16-channel groups cost one step
    whatever they keep), 'fine' every 4 (pruning them saves latency)."""
    out = []
    for name, step in (("coarse", 16), ("fine", 4)):
        lm = latency.build_latency_model(det_tiny(), X, fake.FakeProfiler(step=step),
                                         cache_dir=tmp_path / "cache", progress=False)
        lm.name = name
        out.append(lm)
    return out


def run(run_dir, lms, finetune=None, iterations=2, **kwargs):
    teacher = det_tiny()
    kwargs.setdefault("selection", SelectionConfig(k=4, n_params=0, n_flops=0, n_latency=2))
    return per_target_prune(
        det_tiny(), X, tiny.TinyEvaluator(teacher), finetune or tiny.TinyFinetune(teacher),
        run_dir=run_dir, latency_models=lms, iterations=iterations, finetune_steps=4,
        executor=SerialExecutor(), progress=False, **kwargs)


def counts(run_dir: Path, iteration: int) -> dict[str, int]:
    model = load_candidate(run_dir, iteration, det_tiny)
    return {g.id: g.channels for g in ep.trace(model, X).prunable_groups}


def test_targets_get_their_own_candidates_and_knees(tmp_path):
    from edgeprune.deploy import sweep

    lms = models(tmp_path)
    res = run(tmp_path / "run", lms)
    assert read_json(tmp_path / "run" / MARKER)["targets"] == {"coarse": "coarse", "fine": "fine"}
    assert set(res.results) == {"coarse", "fine"}
    for name, r in res.results.items():  # each run saw only its own target's latency model
        assert r.run_dir == tmp_path / "run" / name
        assert all(set(c.predicted_ms) == {name} for c in r.candidates)
    last = {n: counts(tmp_path / "run" / n, r.candidates[-1].iteration) for n, r in res.results.items()}
    assert last["coarse"] != last["fine"]  # different kept channel counts per target
    for r in res.results.values():  # every step bought predicted latency on the run's own target
        ms = [c.predicted_ms[r.run_dir.name] for c in r.candidates]
        assert all(b < a for a, b in zip(ms, ms[1:])), ms
    # the unpruned model's sensitivity ran once for both runs (content-keyed shared cache)
    selections = list((tmp_path / "run").glob("*/iter_*/selection.json"))
    analysed = [d for d in (tmp_path / "run" / "sensitivity_cache").iterdir() if d.is_dir()]
    assert len(analysed) == len(selections) - 1

    from edgeprune.deploy.sweep import run_img_size

    assert run_img_size(tmp_path / "run") == (tiny.IMG, tiny.IMG)  # from its runs: the export size
    targets = [{"name": n, "runtime": "onnxruntime", "threads": 1} for n in ("coarse", "fine")]
    sw = sweep(tmp_path / "run", targets, tmp_path / "sweep", model_factory=det_tiny,
               profile_config=FAST, bundles=False, accuracy_floor_rel=0)
    for name, tr in sw.targets.items():
        own = [f"{name}.iter_{c.iteration:02d}" for c in list_candidates(tmp_path / "run" / name)]
        assert tr.knee.ids == own  # measured on, and the knee chosen among, its own candidates only
        assert set(tr.record["candidates"]) == set(own)
        assert tr.knee.candidate_id in own
        assert tr.run_dir == str(tmp_path / "run" / name) and tr.per_target
    rep = json.loads(Path(sw.report["json"]).read_text())
    assert rep["targets"]["fine"]["candidates_from"]["run"] == str(tmp_path / "run" / "fine")
    assert {r["candidate"] for r in rep["targets"]["coarse"]["rows"]} == set(sw.targets["coarse"].knee.ids)
    md = Path(sw.report["markdown"]).read_text()
    assert f"its own run `{tmp_path / 'run' / 'coarse'}`" in md and "Per-target pruning" in md
    with pytest.raises(InvalidConfigError, match="no run for target"):
        sweep(tmp_path / "run", [{"name": "other", "runtime": "onnxruntime"}], tmp_path / "sweep2",
              model_factory=det_tiny, profile_config=FAST, bundles=False, report=False)


def test_per_target_run_resumes(tmp_path):
    lms = models(tmp_path)
    first = run(tmp_path / "run", lms)
    shas = {n: [c.plan_sha256 for c in r.candidates] for n, r in first.results.items()}
    teacher = det_tiny()
    ft = tiny.TinyFinetune(teacher)
    again = run(tmp_path / "run", lms, finetune=ft)
    assert ft.calls == 0  # every candidate of both runs was read back, nothing fine-tuned again
    assert {n: [c.plan_sha256 for c in r.candidates] for n, r in again.results.items()} == shas
    # a run interrupted after its first candidate continues, and takes the same path
    fine = tmp_path / "run" / "fine"
    for d in sorted(fine.glob("iter_*"))[2:]:
        shutil.rmtree(d)
    ft = tiny.TinyFinetune(teacher)
    resumed = run(tmp_path / "run", lms, finetune=ft)
    assert ft.calls == len(shas["fine"]) - 2  # only the fine target's missing candidates were redone
    assert [c.plan_sha256 for c in resumed.results["fine"].candidates] == shas["fine"]


def test_bad_per_target_configs_are_refused(tmp_path):
    from edgeprune.iterative.config import validate

    lms = models(tmp_path)
    with pytest.raises(InvalidConfigError, match="needs a latency model per target"):
        run(tmp_path / "a", [])
    with pytest.raises(InvalidConfigError, match=r"unknown target\(s\) \['gpu'\]"):
        run(tmp_path / "b", lms, targets=["gpu"])
    with pytest.raises(InvalidConfigError, match="same candidates for every target"):
        run(tmp_path / "c", lms, selection=SelectionConfig(n_params=1, n_flops=0), snap=False)
    tiny.run_tiny(tmp_path / "joint", 1)  # a joint run folder
    with pytest.raises(InvalidConfigError, match="joint run"):
        run(tmp_path / "joint", lms)

    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    raw = {"model": "demo", "data": {"train": "train", "val": "val"}, "evaluator": {"kind": "detection"},
           "finetune": {"kind": "labeled"}, "targets": {"iterations": 3}, "run_dir": "run",
           "selection": {"n_latency": 3},
           "latency": {"targets": [{"name": "ort", "runtime": "onnxruntime", "threads": 2},
                                   {"name": "ov", "runtime": "openvino", "threads": 2}], "per_target": True}}
    assert validate(raw, tmp_path).section("latency")["per_target"] is True
    assert validate({**raw, "latency": {**raw["latency"], "per_target": ["ov"]}}, tmp_path)
    with pytest.raises(InvalidConfigError, match=r"latency.per_target.*unknown target\(s\) \['gpu'\]"):
        validate({**raw, "latency": {**raw["latency"], "per_target": ["gpu"]}}, tmp_path)
    with pytest.raises(InvalidConfigError, match="latency.per_target.*needs latency.targets"):
        validate({**raw, "selection": {}, "latency": {"per_target": True}}, tmp_path)
    with pytest.raises(InvalidConfigError, match="latency.per_target"):
        validate({**raw, "latency": {**raw["latency"], "per_target": "yes"}}, tmp_path)


def test_demo_per_target_needs_latency_and_states_its_cost(tmp_path):
    from edgeprune.cli import build_parser
    from edgeprune.demo import DemoConfig, run_demo

    with pytest.raises(InvalidConfigError, match="--latency --per-target"):
        run_demo(DemoConfig(out_dir=tmp_path / "demo", per_target=True))
    assert not (tmp_path / "demo").exists()  # refused before any work
    parser = build_parser()
    args = parser.parse_args(["demo", "--latency", "--per-target"])
    assert args.per_target and args.latency
    sub = next(a for a in parser._actions if a.dest == "command")
    help_text = sub.choices["demo"].format_help()
    assert "--per-target" in help_text and "x the pruning" in " ".join(help_text.split())


def test_prune_config_per_target_runs_one_run_per_named_target(tmp_path, monkeypatch):
    from edgeprune.iterative import config as prune_config
    from edgeprune.iterative.run_config import run_prune_config

    lms = models(tmp_path)
    teacher = det_tiny()
    # the config's own builders need image folders and runtimes; the tiny ones stand in for them
    monkeypatch.setattr(prune_config, "build_evaluator", lambda cfg, t, size: tiny.TinyEvaluator(teacher))
    monkeypatch.setattr(prune_config, "build_finetune", lambda cfg, t, size: tiny.TinyFinetune(teacher))
    monkeypatch.setattr(prune_config, "latency_models", lambda cfg, m, x: lms)
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    raw = {"model": {"python": "test_per_target:det_tiny"}, "data": {"train": "train", "val": "val",
                                                                       "img_size": tiny.IMG},
           "evaluator": {"kind": "fidelity"}, "finetune": {"kind": "distill", "steps": 4},
           "targets": {"iterations": 1}, "run_dir": "run", "executor": {"kind": "serial"},
           "selection": {"k": 4, "n_params": 0, "n_flops": 0, "n_latency": 2},
           "latency": {"targets": [{"name": "coarse", "runtime": "onnxruntime"},
                                   {"name": "fine", "runtime": "onnxruntime"}], "per_target": ["fine"]}}
    res = run_prune_config(prune_config.validate(raw, tmp_path), progress=False)
    assert list(res.results) == ["fine"] and res.run_dir == tmp_path / "run"
    assert read_json(tmp_path / "run" / MARKER)["targets"] == {"fine": "fine"}
    assert [c.iteration for c in list_candidates(tmp_path / "run" / "fine")] == [0, 1]
    assert "fine" in res.table() and not (tmp_path / "run" / "coarse").exists()
