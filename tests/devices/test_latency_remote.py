"""The latency model built through the device agent over SSH (RemoteProfiler) on a loopback sshd agrees with
the one built on the local runtime, and its cache key names the device."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.ssh

FAST = {"warmup_runs": 3, "warmup_s": 0.0, "min_runs": 15, "min_s": 0.03, "max_repeats": 1}


def _model():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU(),
                         nn.Conv2d(16, 4, 1)).eval()


def test_remote_latency_model_matches_the_local_one(sshd, tmp_path, device_python, torch_shim):
    from edgeprune import latency
    from edgeprune.deploy.targets import Target, target_from_config
    from edgeprune.runtimes.profiling import ProfileConfig

    box = tmp_path / "test-box.yaml"  # the 'device': this machine's onnxruntime over SSH, torch shimmed away
    box.write_text(
        "name: test-box\nruntime: onnxruntime\nthreads: 1\nchannel_multiple: 8\ninput_size: 32\n"
        f"ssh:\n  host: 127.0.0.1\n  port: {sshd.port}\n  identity_file: {sshd.key}\n"
        f"  python: {device_python}\n  remote_dir: {tmp_path / 'device'}\n"
        f"  env: {{PYTHONPATH: {torch_shim}}}\n"
        f"  options: [UserKnownHostsFile={sshd.known_hosts}, StrictHostKeyChecking=accept-new, "
        "IdentitiesOnly=yes]\n"
    )
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
    assert lm_remote.predict(half) < lm_remote.predict()
