"""Sensitivity caching, the iterative loop, its run folder, resume after SIGKILL, replay of candidates."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_iterative_tinynet as tiny
import torch

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import read_json
from edgeprune.iterative import (
    LocalProcessExecutor,
    SerialExecutor,
    list_candidates,
    load_candidate,
    sensitivity,
)
from edgeprune.pruning import kept_channels

HERE = Path(__file__).resolve().parent  # subprocesses get it as PYTHONPATH to import the tiny net
X = torch.zeros(1, 3, tiny.IMG, tiny.IMG)
# tiny convs on a shared, loaded 2-core machine run ~8x faster on one thread than on two
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sensitivity_table_and_cache_reuse(tmp_path):
    model = tiny.tiny_model()
    ev = tiny.TinyEvaluator(model)
    table = sensitivity(model, X, ev, rates=(0.25, 0.5), executor=SerialExecutor(), cache_dir=tmp_path,
                        progress=False)
    groups = table.groups
    assert len(groups) >= 5 and len(table.rows) == 2 * len(groups)
    assert ev.calls == 1 + len(table.rows)  # the baseline, then every (group, rate)
    assert table.baseline["fidelity"] == pytest.approx(1.0)
    for r in table.rows:
        assert r.removed == r.channels - kept_channels(r.channels, r.rate, 1) > 0
        assert r.params_removed > 0 and r.flops_removed > 0 and r.metric < 1.0
    # Pruning harder never keeps more parameters.
    for g in groups:
        assert table.row(g, 0.5).params_removed > table.row(g, 0.25).params_removed
    cache = next(p for p in tmp_path.iterdir() if p.is_dir())
    files = {p.name for p in cache.iterdir()}
    assert {"sensitivity.csv", "sensitivity.json", "sensitivity.png", "key.json"} <= files

    ev2 = tiny.TinyEvaluator(model)
    again = sensitivity(model, X, ev2, rates=(0.25, 0.5), executor=SerialExecutor(), cache_dir=tmp_path,
                        progress=False)
    assert ev2.calls == 0 and again.rows == table.rows

    # An interrupted pass resumes: only the missing result is computed.
    rows = sorted((cache / "rows").iterdir())
    rows[0].unlink()
    ev3 = tiny.TinyEvaluator(model)
    sensitivity(model, X, ev3, rates=(0.25, 0.5), executor=SerialExecutor(), cache_dir=tmp_path,
                progress=False)
    assert ev3.calls == 1

    # Other weights -> another cache key -> everything recomputed.
    ev4 = tiny.TinyEvaluator(model)
    sensitivity(tiny.tiny_model(seed=1), X, ev4, rates=(0.25, 0.5), executor=SerialExecutor(),
                cache_dir=tmp_path, progress=False)
    assert ev4.calls == 1 + len(table.rows)


def test_unpicklable_evaluator_is_a_clear_error():
    model = tiny.tiny_model()
    ev = tiny.TinyEvaluator(model)
    ev.hook = lambda m: m  # lambdas cannot be pickled
    with pytest.raises(InvalidConfigError, match="cannot be pickled.*workers=1"):
        sensitivity(model, X, ev, rates=(0.5,), executor=LocalProcessExecutor(2), progress=False)


@pytest.mark.slow
def test_process_pool_gives_the_serial_results(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    model = tiny.tiny_model()
    serial = sensitivity(model, X, tiny.TinyEvaluator(model), rates=(0.5,), executor=SerialExecutor(),
                         progress=False)
    pooled = sensitivity(model, X, tiny.TinyEvaluator(model), rates=(0.5,), executor=LocalProcessExecutor(2),
                         cache_dir=tmp_path, progress=False)
    assert [(r.group, r.removed, r.params_removed, r.flops_removed) for r in pooled.rows] == \
           [(r.group, r.removed, r.params_removed, r.flops_removed) for r in serial.rows]
    for a, b in zip(pooled.rows, serial.rows):
        assert a.metric == pytest.approx(b.metric, rel=1e-5)
    assert not list(tmp_path.glob("*/.payload-*"))  # the worker payload is cleaned up


def test_run_folder_and_candidates_replay_identically(tmp_path):
    teacher = tiny.tiny_model()
    ft = tiny.TinyFinetune(teacher)
    from edgeprune.iterative import SelectionConfig, iterative_prune

    result = iterative_prune(tiny.tiny_model(), X, tiny.TinyEvaluator(teacher), ft, run_dir=tmp_path / "run",
                             iterations=2, finetune_steps=4, executor=SerialExecutor(), progress=False,
                             selection=SelectionConfig(k=4, n_params=2, n_flops=1))
    run = tmp_path / "run"
    cands = list_candidates(run)
    assert [c.iteration for c in cands] == [0, 1, 2] and result.final_iteration == 2
    assert read_json(run / "candidates.json")[2]["params"] == cands[2].params
    assert read_json(run / "run.json")["baseline"]["params"] == cands[0].params
    assert cands[0].param_sparsity == 0.0
    assert 0 < cands[1].param_sparsity < cands[2].param_sparsity
    assert 0 < cands[1].flops_sparsity < cands[2].flops_sparsity
    for c in cands[1:]:
        assert 1 <= len(c.selected) <= 3
        assert {"sensitivity", "prune", "finetune", "evaluate"} <= set(c.seconds)
        assert (run / f"iter_{c.iteration:02d}" / "sensitivity").is_dir()
    for i, c in enumerate(cands):
        model = load_candidate(run, i, tiny.tiny_model)
        from edgeprune.complexity import count_params

        assert count_params(model) == c.params
        expected = tiny.tiny_model()(tiny.probe()) if i == 0 else ft.outputs[i - 1]
        with torch.no_grad():
            assert torch.equal(model(tiny.probe()), expected)
        # The metric recorded is the metric of the model the plan replays to.
        assert tiny.TinyEvaluator(teacher)(model)["fidelity"] == c.metric
    with torch.no_grad():
        assert torch.equal(result.model(tiny.probe()), ft.outputs[-1])
    assert "| 2 |" in result.table()


def test_resume_skips_finished_work_and_refuses_other_configs(tmp_path):
    run = tmp_path / "run"
    tiny.run_tiny(run, 1)
    # Same call with one more iteration: candidate 1 is reused, only iteration 2 is computed.
    teacher = tiny.tiny_model()
    ev, ft = tiny.TinyEvaluator(teacher), tiny.TinyFinetune(teacher)
    from edgeprune.iterative import SelectionConfig, iterative_prune

    kwargs = dict(run_dir=run, finetune_steps=6, executor=SerialExecutor(), progress=False,
                  selection=SelectionConfig(k=4, n_params=2, n_flops=1))
    result = iterative_prune(tiny.tiny_model(), X, ev, ft, iterations=2, **kwargs)
    assert [c.iteration for c in result.candidates] == [0, 1, 2]
    assert ft.calls == 1  # only iteration 2 was fine-tuned

    with pytest.raises(InvalidConfigError, match="differing keys: criterion, round_to"):
        iterative_prune(tiny.tiny_model(), X, ev, ft, iterations=2, criterion="l1", round_to=2, **kwargs)
    with pytest.raises(InvalidConfigError, match="weights_sha256"):
        iterative_prune(tiny.tiny_model(seed=5), X, ev, ft, iterations=2, **kwargs)
    fresh = iterative_prune(tiny.tiny_model(), X, ev, ft, iterations=1, criterion="l1", fresh=True, **kwargs)
    assert [c.iteration for c in fresh.candidates] == [0, 1]
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    assert len(moved) == 1 and (moved[0] / "iter_02" / "metrics.json").exists()


def test_metric_floor_keeps_last_candidate_above_it(tmp_path):
    probe_run = tiny.run_tiny(tmp_path / "probe", 3)
    metrics = [c.metric for c in probe_run.candidates]
    assert metrics[3] < metrics[0]
    # A floor just under candidate 1: the loop must stop at the first candidate below it.
    floor = metrics[1] - 1e-9
    first_below = next(i for i, m in enumerate(metrics) if m < floor)
    result = tiny.run_tiny(tmp_path / "floor", None, metric_floor=floor)
    assert result.candidates[-1].iteration == first_below
    assert result.final_iteration == first_below - 1
    assert "below the floor" in result.stop_reason


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has stopped computing
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_parent_is_sigkilled(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {**os.environ, "PYTHONPATH": str(HERE), "TINY_PID_DIR": str(pids)}
    cmd = [sys.executable, str(HERE / "test_iterative_tinynet.py"), str(tmp_path / "c"), "pool"]
    proc = subprocess.Popen(cmd, env=env)
    try:
        deadline = time.monotonic() + 120
        while len([p for p in pids.iterdir() if int(p.name) != proc.pid]) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir() if int(p.name) != proc.pid]
        assert len(workers) == 2, "the two workers never started"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(w) for w in workers)
    finally:
        proc.kill()


def _script(run_dir: Path, iterations: int, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(HERE), **env}
    cmd = [sys.executable, str(HERE / "test_iterative_tinynet.py"), str(run_dir), str(iterations)]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sigkilled_run_resumes_to_the_same_candidates(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert _script(ref, 3).returncode == 0
    # Kill 1: in the middle of iteration 1's sensitivity (evaluation 1 is candidate 0, 2 the baseline).
    p = _script(killed, 3, TINY_KILL_AT_EVAL="9")
    assert p.returncode == -signal.SIGKILL
    rows = list((killed / "iter_01" / "sensitivity").glob("*/rows/*.json"))
    assert 0 < len(rows) < len(list((ref / "iter_01" / "sensitivity").glob("*/rows/*.json")))
    # Kill 2: in the middle of the second fine-tune (iteration 2).
    p = _script(killed, 3, TINY_KILL_AT_FINETUNE="2")
    assert p.returncode == -signal.SIGKILL
    assert (killed / "iter_01" / "metrics.json").exists() and not (killed / "iter_02" / "weights.pt").exists()
    p = _script(killed, 3)
    assert p.returncode == 0, p.stderr[-2000:]

    a, b = list_candidates(ref), list_candidates(killed)
    assert [c.iteration for c in a] == [c.iteration for c in b] == [0, 1, 2, 3]
    for ca, cb in zip(a, b):
        it = f"iter_{ca.iteration:02d}"
        assert (ref / it / "plan.json").read_text() == (killed / it / "plan.json").read_text()
        wa = torch.load(ref / it / "weights.pt", weights_only=True)
        wb = torch.load(killed / it / "weights.pt", weights_only=True)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert (ca.metric, ca.params, ca.flops, ca.selected) == \
               (cb.metric, cb.params, cb.flops, cb.selected)
