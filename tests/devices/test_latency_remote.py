"""The latency model built through the device agent over SSH (RemoteProfiler) on a loopback sshd agrees with
the one built on the local runtime, its cache key names the device and the device's runtime version (an
upgrade there selects another cache file), and the threads it records are those the agent measured with."""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.ssh

FAST = {"warmup_runs": 3, "warmup_s": 0.0, "min_runs": 15, "min_s": 0.03, "max_repeats": 1}


def _model():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(16, 4, 1)).eval()


def _box(tmp_path, sshd, device_python, pythonpath, threads=1):
    """The 'device': this machine's onnxruntime over SSH, torch shimmed away."""
    box = tmp_path / "test-box.yaml"
    box.write_text(
        f"name: test-box\nruntime: onnxruntime\nthreads: {threads}\nchannel_multiple: 8\ninput_size: 32\n"
        f"ssh:\n  host: 127.0.0.1\n  port: {sshd.port}\n  identity_file: {sshd.key}\n"
        f"  python: {device_python}\n  remote_dir: {tmp_path / 'device'}\n"
        f"  env: {{PYTHONPATH: '{os.pathsep.join(map(str, pythonpath))}'}}\n"
        f"  options: [UserKnownHostsFile={sshd.known_hosts}, StrictHostKeyChecking=accept-new, "
        "IdentitiesOnly=yes]\n"
    )
    return box


def test_remote_latency_model_matches_the_local_one(sshd, tmp_path, device_python, torch_shim):
    from edgeprune import latency
    from edgeprune.deploy.targets import Target, target_from_config
    from edgeprune.runtimes.profiling import ProfileConfig

    box = _box(tmp_path, sshd, device_python, [torch_shim])
    fast = ProfileConfig(**FAST)
    x = torch.zeros(1, 3, 32, 32)
    cache = tmp_path / "cache"
    remote_target = target_from_config({"name": "box", "device": str(box)})  # as a sweep config names it
    assert (remote_target.runtime, remote_target.threads) == ("onnxruntime", 1)
    remote = latency.profiler_for(remote_target, tmp_path / "work")
    assert isinstance(remote, latency.RemoteProfiler)
    remote.micro = remote.whole = fast
    local = latency.LocalProfiler(Target("here", "onnxruntime", threads=1), micro=fast, whole=fast)

    lm_remote = latency.build_latency_model(_model(), x, remote, cache_dir=cache, progress=False)
    lm_local = latency.build_latency_model(_model(), x, local, cache_dir=cache, progress=False)

    # the agent really measured on the 'device': one job folder with results from the agent zipapp
    results = sorted((tmp_path / "work" / "test-box" / "results").glob("*.json"))
    assert results and all(json.loads(p.read_text())["agent"]["torch_loaded"] is False for p in results)
    assert lm_remote.key["device"] == str(box) and lm_local.key["device"] is None
    # one cache file per target key: the device's measurements never stand in for the local ones
    keys = [json.loads(p.read_text())["key"] for p in sorted(cache.glob("*.json"))]
    assert len(keys) == 2 and {k["device"] for k in keys} == {str(box), None}
    assert set(lm_remote.calibration) == set(lm_local.calibration) == {"unpruned", "pruned"}
    # same runtime, same machine, same threads: the two models predict alike (loose: a shared, busy machine)
    half = [(3, 8), (8, 8), (8, 4)]
    for channels in (None, half):
        r, loc = lm_remote.predict(channels), lm_local.predict(channels)
        assert r > 0 and loc > 0 and 1 / 3 < r / loc < 3, (channels, r, loc)
    # both measured the same channel grid per layer (which count is faster is noise for convs this small:
    # monotonicity is tested on the fake step-function target)
    assert [sorted(t.out_ratio) for t in lm_remote.tables] == [sorted(t.out_ratio) for t in lm_local.tables]
    assert [sorted(t.in_ratio) for t in lm_remote.tables] == [sorted(t.in_ratio) for t in lm_local.tables]


def test_device_runtime_upgrade_and_threads_override(sshd, tmp_path, device_python, torch_shim):
    from torch import nn

    from edgeprune import latency
    from edgeprune.deploy.targets import target_from_config
    from edgeprune.runtimes.profiling import ProfileConfig

    def build(box, **override):
        prof = latency.profiler_for(target_from_config({"device": str(box), **override}), tmp_path / "work")
        prof.micro = prof.whole = ProfileConfig(**FAST)
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 4, 1)).eval()
        return latency.build_latency_model(model, torch.zeros(1, 3, 32, 32), prof, cache_dir=cache,
                                           progress=False)

    def results():
        folder = tmp_path / "work" / "test-box" / "results"
        return [json.loads(p.read_text()) for p in folder.glob("*.json")]

    cache = tmp_path / "cache"
    # the profile says 2 threads, the sweep config 1: the key and the agent's sessions both say 1
    box = _box(tmp_path, sshd, device_python, [torch_shim], threads=2)
    first = build(box, threads=1)
    version = first.key["runtime_version"]
    assert first.key["threads"] == 1 and version
    assert results() and {r["artifact"]["options"]["threads"] for r in results()} == {1}
    assert {r["runtime_options"]["threads"] for r in results()} == {1}
    assert {r["runtime_version"] for r in results()} == {version}

    # the device's runtime is 'upgraded' (its python now reports another onnxruntime version)
    upgrade = tmp_path / "upgrade"
    upgrade.mkdir()
    (upgrade / "sitecustomize.py").write_text("import onnxruntime\n"
                                              "onnxruntime.__version__ = '99.0-upgraded'\n")
    box = _box(tmp_path, sshd, device_python, [torch_shim, upgrade], threads=2)
    second = build(box, threads=1)
    assert second.key["runtime_version"] == "99.0-upgraded"
    keys = [json.loads(p.read_text())["key"] for p in sorted(cache.glob("*.json"))]
    assert sorted(k["runtime_version"] for k in keys) == sorted([version, "99.0-upgraded"])
    # measured again by the agent on the new version: neither host nor device results were reused
    assert results() and {r["runtime_version"] for r in results()} == {"99.0-upgraded"}
    assert {r["agent"]["torch_loaded"] for r in results()} == {False}
