"""Sweeps over several remote devices: devices measured at once, never two measurements on one device."""

from __future__ import annotations

import importlib
import threading
import time

import pytest
from sweep_helpers import conv_candidate

from edgeprune.deploy import SweepCandidate
from edgeprune.deploy.device_pool import device_key, measure_devices_concurrently
from edgeprune.deploy.targets import targets_from_config
from edgeprune.errors import DeviceUnreachableError
from edgeprune.runtimes.profiling import LatencyStats

sweep_mod = importlib.import_module("edgeprune.deploy.sweep")  # the package exports a function of that name


class Recorder:
    """A fake measurement: holds its device for ``hold`` seconds and records who overlapped whom."""

    def __init__(self, hold: float = 0.4, fail: str | None = None) -> None:
        self.hold, self.fail = hold, fail
        self.lock = threading.Lock()
        self.busy: dict[str, int] = {}
        self.spans: dict[str, tuple[float, float]] = {}
        self.max_per_device = 0

    def __call__(self, target, cands=(), *args, **kwargs) -> dict:
        key = device_key(target) if target.remote else "host"
        with self.lock:
            self.busy[key] = self.busy.get(key, 0) + 1
            self.max_per_device = max(self.max_per_device, self.busy[key])
        t0 = time.monotonic()
        time.sleep(self.hold)
        with self.lock:
            self.busy[key] -= 1
            self.spans[target.name] = (t0, time.monotonic())
        if target.name == self.fail:
            raise DeviceUnreachableError(f"{target.name}: ssh timed out")
        stats = LatencyStats.from_samples([10.0 - i for i in range(5)])
        return {"key": {}, "candidates": {c.id: {"stats": stats.to_dict()} for c in cands}}


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


TARGETS = [
    {"name": "orin-trt", "device": "jetson-orin-nano", "host": "ci@10.0.0.7"},
    {"name": "orin-trt-int8", "device": "jetson-orin-nano", "host": "10.0.0.7", "precision": "int8"},
    {"name": "nx", "device": "jetson-xavier-nx", "host": "10.0.0.8"},
    {"name": "ipc", "device": "intel-cpu", "host": "ipc.local"},
    {"name": "here", "device": "local"},  # no host: the agent runs on this machine
]


def test_devices_run_concurrently_one_measurement_per_device():
    targets = targets_from_config(TARGETS)
    rec = Recorder()
    futures = measure_devices_concurrently(targets, rec)
    assert set(futures) == {"orin-trt", "orin-trt-int8", "nx", "ipc"}  # "here" stays with the caller
    for f in futures.values():
        f.result(timeout=30)
    s = rec.spans
    assert _overlap(s["orin-trt"], s["nx"]) and _overlap(s["nx"], s["ipc"])  # devices at once
    assert not _overlap(s["orin-trt"], s["orin-trt-int8"])  # one device (same host): one after another
    assert rec.max_per_device == 1
    assert device_key(targets[4]) is None


def test_sweep_measures_devices_at_once_and_keeps_going_past_a_failed_one(tmp_path, monkeypatch):
    cands = []
    for width, sparsity in ((16, 0.0), (8, 0.5)):
        path = tmp_path / f"c{width}.onnx"
        conv_candidate(path, width)
        cands.append(SweepCandidate(f"c{width}", sparsity=sparsity, onnx_path=str(path)))
    rec = Recorder(fail="nx")
    monkeypatch.setattr(sweep_mod, "measure_target", lambda t, c, *a, **k: rec(t, c))
    res = sweep_mod.sweep(cands, TARGETS, tmp_path / "out", bundles=False, report=False)
    assert set(res.targets) == {"orin-trt", "orin-trt-int8", "ipc", "here"}
    assert "ssh timed out" in res.failed["nx"]
    s = rec.spans
    assert _overlap(s["orin-trt"], s["ipc"]) and not _overlap(s["orin-trt"], s["orin-trt-int8"])
    assert rec.max_per_device == 1


@pytest.mark.parametrize("host,key", [("ci@jet", "jet"), ("localhost", None), ("127.0.0.1", None)])
def test_device_key(host, key):
    assert device_key(targets_from_config([{"device": "jetson-orin-nano", "host": host}])[0]) == key
