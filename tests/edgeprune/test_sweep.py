"""The sweep on tiny ONNX candidates with ONNX Runtime: resumability, bundles, report, targets."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from sweep_helpers import conv_candidate

from edgeprune.deploy import SweepCandidate, measure, sweep, targets_from_config
from edgeprune.errors import InvalidConfigError
from edgeprune.runtimes import load_bundle, registry

FAST = {"warmup_runs": 2, "warmup_s": 0.0, "min_runs": 8, "min_s": 0.02, "max_repeats": 1}
WIDTHS = {"c0": 48, "c1": 32, "c2": 16}


def make_cands(tmp_path, widths=WIDTHS):
    out = []
    for k, (cid, w) in enumerate(widths.items()):
        p = conv_candidate(tmp_path / f"{cid}.onnx", w, sparsity=k / 4)
        acc = 0.6 - 0.05 * k
        out.append(
            SweepCandidate(
                cid,
                sparsity=k / 4,
                onnx_path=p,
                params=w * 100,
                flops=w * 10**6,
                metrics={"mAP50-95": acc},
                primary="mAP50-95",
            )
        )
    return out


class Counter:
    """Wraps the runtime registry's lookup and the measurement's compare() to count compiles and passes."""

    def __init__(self, monkeypatch):
        self.compiles, self.compares = [], []
        real_get, real_compare = registry.get, measure.compare
        counter = self

        class Wrapped:
            def __init__(self, rt):
                self.rt = rt

            def __getattr__(self, name):
                return getattr(self.rt, name)

            def compile(self, onnx_path, workdir, **kw):
                counter.compiles.append(Path(onnx_path).stem)
                return self.rt.compile(onnx_path, workdir, **kw)

        def get(name):
            return Wrapped(real_get(name))

        def cmp(sessions, feeds, config=None, **kw):
            counter.compares.append(sorted(sessions))
            return real_compare(sessions, feeds, config, **kw)

        monkeypatch.setattr(registry, "get", get)
        monkeypatch.setattr(measure, "compare", cmp)


def assert_knee_rule(tr, floor=None):
    """The pick obeys the knee rule on the stored measurements, checked from the samples themselves."""
    rec = tr.record["candidates"]
    ids = tr.knee.ids
    med = [float(np.median(rec[cid]["stats"]["samples_ms"])) for cid in ids]
    assert med == pytest.approx(tr.knee.medians_ms)  # the knee saw what was measured
    metric = {c: 0.6 - 0.05 * int(c[1]) for c in ids}
    ok = [floor is None or metric[c] >= floor for c in ids]
    assert tr.knee.eligible == ok

    def within(i):  # least latency among eligible candidates at least as sparse, within i's tolerance
        best = min(med[j] for j in range(i, len(ids)) if ok[j])
        return med[i] - best <= tr.knee.tolerance_ms[i]

    k = ids.index(tr.knee.candidate_id)
    assert ok[k] and within(k)
    assert not any(ok[i] and within(i) for i in range(k))  # no less sparse candidate qualifies
    assert all(t >= tr.knee.tau * m for t, m, e in zip(tr.knee.tolerance_ms, med, ok) if e)


def run(tmp_path, cands, **kw):
    targets = [{"name": "ort1", "runtime": "onnxruntime", "threads": 1}]
    return sweep(cands, targets, tmp_path / "out", img_size=32, profile_config=FAST, **kw)


def test_sweep_resumes_without_recomputing(tmp_path, monkeypatch):
    c = Counter(monkeypatch)
    res = run(tmp_path, make_cands(tmp_path))
    assert sorted(c.compiles) == ["c0", "c1", "c2"] and c.compares == [["c0", "c1", "c2"]]
    tr = res.targets["ort1"]
    assert set(tr.stats) == set(WIDTHS) and all(s.n >= 8 for s in tr.stats.values())
    assert_knee_rule(tr, floor=0.9 * 0.6)  # the default floor: 0.9 x the unpruned metric
    first = json.loads((tmp_path / "out/targets/ort1.json").read_text())

    res2 = run(tmp_path, make_cands(tmp_path))  # second call: nothing compiled, nothing profiled
    assert len(c.compiles) == 3 and len(c.compares) == 1
    assert res2.targets["ort1"].knee.candidate_id == tr.knee.candidate_id
    assert json.loads((tmp_path / "out/targets/ort1.json").read_text()) == first

    run(tmp_path, make_cands(tmp_path), fresh=True)  # fresh: measured again, compiles still cached
    assert len(c.compiles) == 3 and len(c.compares) == 2

    more = make_cands(tmp_path, {**WIDTHS, "c3": 8})  # a new candidate: only it is compiled
    run(tmp_path, more)
    assert c.compiles[3:] == ["c3"] and c.compares[-1] == ["c0", "c1", "c2", "c3"]


def test_sweep_writes_bundle_and_report(tmp_path):
    res = run(tmp_path, make_cands(tmp_path), accuracy_floor=0.52)
    tr = res.targets["ort1"]
    assert tr.knee.eligible == [True, True, False]  # c2 has 0.50 < 0.52
    assert_knee_rule(tr, floor=0.52)
    m = json.loads((Path(tr.bundle) / "manifest.json").read_text())
    assert m["model_info"]["candidate"] == tr.knee.candidate_id
    assert m["latency"]["median_ms"] == pytest.approx(tr.stats[tr.knee.candidate_id].median_ms)
    assert m["runtime"]["name"] == "onnxruntime" and m["runtime"]["threads"] == 1
    assert m["accuracy"]["metrics"]["mAP50-95"] == pytest.approx(0.6 - 0.05 * int(tr.knee.candidate_id[1]))
    with load_bundle(tr.bundle) as det:
        assert det.artifact_source == "bundle"
        # the bundle runs the knee's model: same raw output as the candidate's own ONNX file
        x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
        ref = ort.InferenceSession(str(tmp_path / f"{tr.knee.candidate_id}.onnx")).run(None, {"images": x})[0]
        np.testing.assert_allclose(det.session.infer({det.input_name: x})[0], ref, rtol=1e-5, atol=1e-5)
    md = Path(res.report["markdown"]).read_text()
    assert "**<- knee**" in md and "onnxruntime" in md and "inference only" in md
    assert "below floor" in md
    for p in res.report["plots"]["ort1"].values():
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rep = json.loads(Path(res.report["json"]).read_text())
    assert rep["targets"]["ort1"]["knee"]["candidate_id"] == tr.knee.candidate_id


def test_evaluator_measures_the_pick_through_its_bundle(tmp_path):
    seen = []

    def evaluator(det):
        seen.append(det.runtime)
        return {"mAP50-95": 0.42}

    res = run(tmp_path, make_cands(tmp_path), evaluator=evaluator)
    tr = res.targets["ort1"]
    assert seen == ["onnxruntime"]
    assert tr.pick_accuracy["metrics"] == {"mAP50-95": 0.42}
    m = json.loads((Path(tr.bundle) / "manifest.json").read_text())
    assert m["accuracy"]["runtime_measured"]["metrics"]["mAP50-95"] == 0.42
    run(tmp_path, make_cands(tmp_path), evaluator=evaluator)
    assert seen == ["onnxruntime"]  # cached


def test_targets_config():
    ts = targets_from_config([{"runtime": "onnxruntime", "threads": 2}, {"runtime": "openvino"}])
    assert [t.name for t in ts] == ["onnxruntime-fp32-t2", "openvino-fp32"]
    assert ts[0].multiple == 8
    dev = targets_from_config([{"device": "jetson-orin-nano", "host": "jet"}])[0]
    assert dev.remote and dev.runtime == "tensorrt" and dev.precision == "fp16" and dev.host == "jet"
    from edgeprune.devices.profile_schema import load_profile

    assert dev.options == load_profile("jetson-orin-nano").runtime_options
    with pytest.raises(InvalidConfigError, match="unknown field"):
        targets_from_config([{"runtime": "onnxruntime", "thread": 2}])
    with pytest.raises(InvalidConfigError, match="two targets"):
        targets_from_config([{"runtime": "onnxruntime"}, {"runtime": "onnxruntime"}])


@pytest.mark.skipif("tensorrt" in __import__("edgeprune").runtimes.available(), reason="tensorrt installed")
def test_failed_target_does_not_stop_the_others(tmp_path):
    targets = [
        {"name": "trt", "runtime": "tensorrt"},
        {"name": "ort1", "runtime": "onnxruntime", "threads": 1},
    ]
    res = sweep(make_cands(tmp_path), targets, tmp_path / "out", img_size=32, profile_config=FAST)
    assert "MissingDependencyError" in res.failed["trt"] and "edgeprune[tensorrt]" in res.failed["trt"]
    ort1 = res.targets["ort1"]
    assert set(ort1.stats) == set(WIDTHS) and (Path(ort1.bundle) / "manifest.json").is_file()
    assert "## Target `trt`: FAILED" in Path(res.report["markdown"]).read_text()


def test_ep_sweep_is_the_sweep_function_not_its_module():
    import importlib

    import edgeprune as ep
    import edgeprune.deploy  # importing the package must not shadow the function

    module = importlib.import_module("edgeprune.deploy.sweep")
    assert ep.sweep is edgeprune.deploy.sweep is module.sweep and inspect.isfunction(ep.sweep)
    with pytest.raises(InvalidConfigError, match="at least one candidate"):
        ep.sweep([], [{"runtime": "onnxruntime"}], "unused")


def test_sweep_rejects_bad_input(tmp_path):
    with pytest.raises(InvalidConfigError):
        sweep([], [{"runtime": "onnxruntime"}], tmp_path)
    c = make_cands(tmp_path)
    with pytest.raises(InvalidConfigError, match="unique"):
        sweep([c[0], c[0]], [{"runtime": "onnxruntime"}], tmp_path)


def test_device_target_measures_through_the_agent(tmp_path):
    # the built-in "local" device profile has no SSH host: the agent runs in this process
    res = sweep(
        make_cands(tmp_path),
        [{"device": "local", "name": "dev"}],
        tmp_path / "out",
        img_size=32,
        profile_config=FAST,
    )
    tr = res.targets["dev"]
    assert tr.target.remote and "agent" in tr.record["measured"]
    assert set(tr.stats) == set(WIDTHS) and all(s.n >= 8 for s in tr.stats.values())
    assert_knee_rule(tr, floor=0.9 * 0.6)
    m = json.loads((Path(tr.bundle) / "manifest.json").read_text())
    assert m["artifact"] is None and m["device"]["device_profile"] == "local"
    mtime = (tmp_path / "out/targets/dev.json").stat().st_mtime_ns
    sweep(
        make_cands(tmp_path),
        [{"device": "local", "name": "dev"}],
        tmp_path / "out",
        img_size=32,
        profile_config=FAST,
    )
    assert (tmp_path / "out/targets/dev.json").stat().st_mtime_ns == mtime  # resumed, not re-measured


def _tiny_run(run_dir, size=64):
    """A two-candidate run folder of yolov7_tiny (unpruned + 50 % pruned), like iterative_prune writes."""
    import torch

    import edgeprune as ep
    from edgeprune.iterative.candidates import save_weights
    from edgeprune.models import yolov7_tiny

    torch.manual_seed(0)
    x = torch.zeros(1, 3, size, size)
    base = yolov7_tiny(num_classes=2, names=["a", "b"]).eval()
    graph = ep.trace(base, x)
    p0 = ep.count_params(base)
    for k, s in enumerate((0.0, 0.5)):
        plan = ep.plan(graph, sparsity=s, round_to=8)
        m = yolov7_tiny(num_classes=2, names=["a", "b"])
        m.load_state_dict(base.state_dict())
        m = ep.apply(m.eval(), plan)
        d = run_dir / f"iter_{k:02d}"
        d.mkdir(parents=True)
        (d / "plan.json").write_text(plan.to_json())
        save_weights(m, d / "weights.pt")
        p = ep.count_params(m)
        metrics = {
            "iteration": k,
            "params": p,
            "flops": ep.count_flops(m, x),
            "param_sparsity": 1 - p / p0,
            "flops_sparsity": 0.0,
            "metrics": {"mAP50-95": 0.5 - 0.1 * k},
            "primary": "mAP50-95",
        }
        (d / "metrics.json").write_text(json.dumps(metrics))


@pytest.mark.slow
def test_cli_sweeps_a_run_folder_and_resumes(tmp_path, capsys):
    from edgeprune.cli import main
    from edgeprune.export import read_metadata

    _tiny_run(tmp_path / "run")
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(
        "run_dir: run\n"
        "model: {builtin: yolov7_tiny, num_classes: 2, names: [a, b]}\n"
        "img_size: 64\n"
        "targets:\n  - {name: ort, runtime: onnxruntime, threads: 1}\n"
        f"profile: {json.dumps(FAST)}\n"
        "out_dir: out\n"
    )
    assert main(["sweep", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "== ort: onnxruntime" in out and "<- knee" in out and "iter_01" in out
    meta = read_metadata(tmp_path / "out/onnx/iter_01.onnx")
    assert meta["sparsity"] > 0.3 and meta["class_names"] == ["a", "b"] and len(meta["plan_sha256"]) == 64
    rec = tmp_path / "out/targets/ort.json"
    onnx_mtime, rec_mtime = (tmp_path / "out/onnx/iter_01.onnx").stat().st_mtime_ns, rec.stat().st_mtime_ns
    assert main(["sweep", str(cfg)]) == 0  # resumed: no export, no measurement
    assert (tmp_path / "out/onnx/iter_01.onnx").stat().st_mtime_ns == onnx_mtime
    assert rec.stat().st_mtime_ns == rec_mtime
    bundle = next((tmp_path / "out/bundles").iterdir())
    with load_bundle(bundle) as det:
        det.detect(__import__("numpy").full((50, 80, 3), 128, "uint8"))
        assert det.names == ["a", "b"]


def test_cli_config_errors_name_the_field(tmp_path):
    from edgeprune.cli import main

    cfg = tmp_path / "bad.yaml"
    cfg.write_text("run_dir: run\nmodel: demo\ntargets: []\nout_dir: out\n")
    assert main(["sweep", str(cfg)]) == 1
    cfg.write_text("run_dir: run\nmodel: demo\ntargets: [onnxruntime]\nout_dir: out\ntau: -1\n")
    with pytest.raises(InvalidConfigError, match="'tau'"):
        from edgeprune.deploy.config import load_config

        load_config(cfg)


def test_onnxruntime_targets_measure_without_spinning_unless_configured():
    # idle ORT sessions spin-wait and steal the cores from the one being timed (see MEASUREMENT_DEFAULTS)
    assert targets_from_config([{"runtime": "onnxruntime"}])[0].options == {"allow_spinning": False}
    t = targets_from_config([{"runtime": "onnxruntime", "options": {"allow_spinning": True}}])[0]
    assert t.options == {"allow_spinning": True}
    assert targets_from_config([{"runtime": "openvino"}])[0].options == {}
