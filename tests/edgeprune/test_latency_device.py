"""The latency model measured through the device agent (RemoteProfiler; here a device profile without a
host, so the agent runs in this process): its cache key holds the device's runtime version before any
measurement, a changed version selects another cache file and is measured anew, and the key's threads
and options are the ones the agent measured with."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from edgeprune import latency  # noqa: E402
from edgeprune.deploy.targets import target_from_config  # noqa: E402
from edgeprune.latency.layers import conv_layers, conv_onnx  # noqa: E402
from edgeprune.runtimes.profiling import ProfileConfig  # noqa: E402

FAST = ProfileConfig(warmup_runs=2, warmup_s=0.0, min_runs=5, min_s=0.01, max_repeats=1)
X = torch.zeros(1, 3, 16, 16)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model():
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1), nn.ReLU(), nn.Conv2d(16, 4, 1)).eval()


@pytest.fixture
def box(tmp_path):
    """A device profile measured in this process: ONNX Runtime with 2 threads and one option."""
    path = tmp_path / "box.yaml"
    path.write_text("name: box\nruntime: onnxruntime\nthreads: 2\nchannel_multiple: 8\ninput_size: 16\n"
                    "runtime_options: {graph_optimization_level: extended}\n")
    return path


def _profiler(box, work, **override):
    prof = latency.profiler_for(target_from_config({"device": str(box), **override}), work)
    assert isinstance(prof, latency.RemoteProfiler)
    prof.micro = prof.whole = FAST
    return prof


def _results(work) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((work / "box" / "results").glob("*.json"))]


def test_key_holds_the_device_runtime_version_before_any_measurement(box, tmp_path, monkeypatch):
    prof = _profiler(box, tmp_path / "work")
    assert prof.key()["runtime_version"] == ort.__version__  # asked from the agent, nothing measured yet
    assert not (tmp_path / "work").exists()
    monkeypatch.setattr(ort, "__version__", "99.0-upgraded")  # the device's runtime is upgraded
    assert prof.key()["runtime_version"] == "99.0-upgraded"


def test_a_changed_device_runtime_version_selects_another_cache_file(box, tmp_path, monkeypatch):
    cache, work, first = tmp_path / "cache", tmp_path / "work", ort.__version__
    before = latency.build_latency_model(_model(), X, _profiler(box, work), cache_dir=cache, progress=False)
    assert before.key["runtime_version"] == ort.__version__
    assert {r["runtime_version"] for r in _results(work)} == {ort.__version__}
    monkeypatch.setattr(ort, "__version__", "99.0-upgraded")
    after = latency.build_latency_model(_model(), X, _profiler(box, work), cache_dir=cache, progress=False)
    assert after.key["runtime_version"] == "99.0-upgraded"
    keys = [json.loads(p.read_text())["key"] for p in sorted(cache.glob("*.json"))]
    assert sorted(k["runtime_version"] for k in keys) == sorted([first, "99.0-upgraded"])
    # measured anew on the 'upgraded' runtime, in the same job folder: the old results were not reused
    assert {r["runtime_version"] for r in _results(work)} == {"99.0-upgraded"}
    monkeypatch.undo()
    again = _profiler(box, work)
    latency.build_latency_model(_model(), X, again, cache_dir=cache, progress=False)
    assert len(list(cache.glob("*.json"))) == 2, "back on the first version: its cache file is used"


def test_the_key_records_the_threads_and_options_the_agent_measured_with(box, tmp_path):
    for override, threads in (({}, 2), ({"threads": 1, "options": {"graph_optimization_level": "basic"}}, 1)):
        work = tmp_path / f"work-{threads}"
        prof = _profiler(box, work, **override)
        key = prof.key()
        assert key["threads"] == threads
        layer = conv_layers(_model(), X)[1]
        got = prof.measure({"m": conv_onnx(layer, 16, 4, None, tmp_path / "m.onnx")})
        assert got["m"] > 0
        (result,) = _results(work)
        assert result["runtime_options"] == {"precision": key["precision"], "threads": key["threads"],
                                             **key["options"]}
        assert result["artifact"]["options"]["threads"] == threads  # what the session was built with
        assert result["latency"]["env"]["threads"] == threads
    assert key["options"] == {"graph_optimization_level": "basic"}  # the override, not the profile's
