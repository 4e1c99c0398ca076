"""Sensitivity on a real Ray cluster on 127.0.0.1: a worker killed mid-task, resume cluster <-> local.

Needs the ``ray`` extra (installed by ``make setup``); the cluster (a head and one worker node, one CPU
each) is started with ``ray start`` and always stopped, its own processes only (``ray_cluster.py``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import ray_cluster
import ray_counting
import test_iterative_tinynet as tiny
import torch

from edgeprune.errors import ClusterError, InvalidConfigError
from edgeprune.iterative import SerialExecutor, executor_from_config, sensitivity

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'edgeprune[ray]'")
from edgeprune.iterative import RayExecutor  # noqa: E402

X = torch.zeros(1, 3, tiny.IMG, tiny.IMG)
RATES = (0.25, 0.5)


@pytest.fixture(scope="module")
def cluster():
    c = ray_cluster.LocalRayCluster(workers=1)
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _evals(log: Path) -> list[str]:
    """Pruned shapes of the finished (group, rate) evaluations; the unpruned baseline is left out."""
    unpruned = "-".join(str(m.out_channels) for m in tiny.tiny_model().modules()
                        if isinstance(m, torch.nn.Conv2d))
    return [e[0] for e in ray_counting.logged(log) if e[0] != unpruned]


def _metrics(table) -> dict:
    return {(r.group, r.rate): (r.removed, r.params_removed, r.flops_removed, r.metric) for r in table.rows}


def _same(a, b) -> None:
    ma, mb = _metrics(a), _metrics(b)
    assert ma.keys() == mb.keys()
    for k in ma:
        assert ma[k][:3] == mb[k][:3]
        assert ma[k][3] == pytest.approx(mb[k][3], rel=1e-5)


@pytest.fixture(scope="module")
def reference():
    model = tiny.tiny_model()
    return sensitivity(model, X, tiny.TinyEvaluator(model), rates=RATES, executor=SerialExecutor(),
                       progress=False)


def test_killed_worker_is_retried_and_nothing_runs_twice(cluster, reference, tmp_path):
    model = tiny.tiny_model()
    ex = RayExecutor(address=cluster.address, max_retries=3)
    assert len([n for n in (ex.connect().nodes()) if n["Alive"]]) == 2  # the head and the worker node
    ev = ray_counting.CountingEvaluator(model, str(tmp_path / "log"), hold=0.2,
                                       kill_flag=str(tmp_path / "killed"), kill_after=2)
    table = sensitivity(model, X, ev, rates=RATES, executor=ex, cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "killed").exists()  # a worker really died mid-evaluation
    evals = _evals(tmp_path / "log")
    assert len(evals) == len(reference.rows) and max(Counter(evals).values()) == 1
    _same(table, reference)
    assert len(list((tmp_path / "cache").glob("*/rows/*.json"))) == len(reference.rows)
    assert ex.gpus_per_task(ray) == 0.0  # no GPU on this cluster: tasks ask for none


def test_local_run_interrupted_resumes_on_the_cluster(cluster, reference, tmp_path):
    model = tiny.tiny_model()
    cache, log = tmp_path / "cache", tmp_path / "log"
    with pytest.raises(RuntimeError, match="on purpose"):
        sensitivity(model, X, ray_counting.CountingEvaluator(model, str(log), stop_after=4), rates=RATES,
                    executor=SerialExecutor(), cache_dir=cache, progress=False)
    first = _evals(log)
    assert len(first) == 3  # the baseline and three (group, rate) results, then the stop
    log2 = tmp_path / "log2"
    table = sensitivity(model, X, ray_counting.CountingEvaluator(model, str(log2)), rates=RATES,
                        executor=RayExecutor(address=cluster.address), cache_dir=cache, progress=False)
    second = _evals(log2)
    assert len(second) == len(reference.rows) - len(first)  # finished results are never recomputed
    assert not set(first) & set(second)
    _same(table, reference)


def test_cluster_run_interrupted_resumes_locally(cluster, reference, tmp_path):
    model = tiny.tiny_model()
    cache, log = tmp_path / "cache", tmp_path / "log"
    with pytest.raises(RuntimeError, match="on purpose"):
        sensitivity(model, X, ray_counting.CountingEvaluator(model, str(log), hold=0.2, stop_after=5),
                    rates=RATES, executor=RayExecutor(address=cluster.address), cache_dir=cache,
                    progress=False)
    cached = len(list(cache.glob("*/rows/*.json")))
    assert 1 <= cached < len(reference.rows)
    log2 = tmp_path / "log2"
    table = sensitivity(model, X, ray_counting.CountingEvaluator(model, str(log2)), rates=RATES,
                        executor=SerialExecutor(), cache_dir=cache, progress=False)
    assert len(_evals(log2)) == len(reference.rows) - cached  # only what the cluster had not delivered
    _same(table, reference)


def test_ray_client_address(cluster, reference, tmp_path):
    """ray://host:port (Ray Client, the way to reach a remote cluster's head) gives the same results."""
    if ray.is_initialized():
        ray.shutdown()
    model = tiny.tiny_model()
    groups = reference.groups[:2]
    try:
        table = sensitivity(model, X, tiny.TinyEvaluator(model), rates=RATES, groups=groups,
                            executor=RayExecutor(address=cluster.client_address), progress=False)
    finally:
        ray.shutdown()
    assert len(table.rows) == 2 * len(groups)
    for row in table.rows:
        assert row.metric == pytest.approx(reference.row(row.group, row.rate).metric, rel=1e-5)


def test_ray_config_errors_are_clear():
    with pytest.raises(InvalidConfigError, match="host:port"):
        RayExecutor(address="nowhere")
    with pytest.raises(InvalidConfigError, match="takes no"):
        executor_from_config({"kind": "ray", "workers": 2})
    with pytest.raises(InvalidConfigError, match="unknown"):
        executor_from_config({"kind": "slurm"})
    assert isinstance(executor_from_config({"kind": "ray", "address": "ray://h:10001"}), RayExecutor)


def test_doctor_shows_the_cluster(cluster, capsys):
    from edgeprune.cli import main

    assert main(["doctor", "--ray-address", cluster.address]) == 0
    out = capsys.readouterr().out
    assert f"cluster: {cluster.address}" in out and "2 node(s), 2 CPUs, 0 GPUs" in out


def test_auto_without_a_cluster_fails_instead_of_starting_one(tmp_path, monkeypatch):
    if ray.is_initialized():
        ray.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # nothing listens there
    with pytest.raises(ClusterError, match="ray start --head"):
        RayExecutor(address="auto").connect()
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))  # no `ray start` record there
    with pytest.raises(ClusterError, match="no Ray cluster to join"):
        RayExecutor(address="auto").connect()
    assert not ray.is_initialized()


def test_prune_config_and_cli_choose_the_executor(tmp_path):
    from edgeprune.iterative import LocalProcessExecutor
    from edgeprune.iterative.config import PruneConfig, _check_executor
    from edgeprune.iterative.run_config import build_executor

    cfg = PruneConfig({"executor": {"kind": "ray", "address": "ray://head:10001", "max_retries": 5},
                       "workers": 2}, tmp_path)
    ex = build_executor(cfg, None, None)
    assert isinstance(ex, RayExecutor) and ex.address == "ray://head:10001" and ex.max_retries == 5
    assert isinstance(build_executor(cfg, "local", None), LocalProcessExecutor)  # CLI overrides the config
    assert build_executor(cfg, None, "10.0.0.5:6379").address == "10.0.0.5:6379"
    assert isinstance(build_executor(PruneConfig({}, tmp_path), None, "auto"), RayExecutor)
    with pytest.raises(InvalidConfigError, match="needs --executor ray"):
        build_executor(cfg, "local", "auto")
    with pytest.raises(InvalidConfigError, match="executor.address"):
        _check_executor({"kind": "ray", "address": "head"})
    with pytest.raises(InvalidConfigError, match="executor.max_retries.*kind: ray only"):
        _check_executor({"kind": "local", "max_retries": 2})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
def test_tasks_get_a_gpu_and_evaluate_on_it(tmp_path):
    if ray.is_initialized():
        ray.shutdown()
    gpu_cluster = ray_cluster.LocalRayCluster(workers=0, gpus=1)
    try:
        gpu_cluster.start()
        model = tiny.tiny_model()
        ex = RayExecutor(address=gpu_cluster.address)  # num_gpus="auto"
        ev = ray_counting.DeviceEvaluator(model, str(tmp_path / "log"))
        table = sensitivity(model, X, ev, rates=(0.5,), executor=ex, progress=False)
        assert ex.gpus_per_task(ray) == 1.0
    finally:
        gpu_cluster.stop()
    devices = (tmp_path / "log").read_text().split()
    assert devices[0] == "cpu"  # the baseline, on the driver
    assert devices[1:] and set(devices[1:]) == {"cuda"} and len(devices) == 1 + len(table.rows)
