"""ONNX Runtime's TensorRT execution provider gets engine and timing caches inside the artifact folder,
and compile_s includes the first run (where the EP may build its engine). A stand-in ``onnxruntime``
records what sessions were given; the real EP needs an NVIDIA GPU."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from edgeprune.errors import InvalidConfigError
from edgeprune.runtimes import onnxruntime_backend as ob


def fake_ort(sessions: list, runs: list):
    import onnxruntime as real

    class Session:
        def __init__(self, path, sess_options=None, providers=None) -> None:
            self.path, self.providers_given = path, providers
            self.inner = real.InferenceSession(path, providers=["CPUExecutionProvider"])
            sessions.append(self)

        def get_inputs(self):
            return self.inner.get_inputs()

        def get_outputs(self):
            return self.inner.get_outputs()

        def get_providers(self):
            return [p[0] if isinstance(p, tuple) else p for p in self.providers_given]

        def get_session_options(self):
            return self.inner.get_session_options()

        def run(self, names, feeds):
            runs.append(self)
            return self.inner.run(names, feeds)

    mod = types.SimpleNamespace(**{k: getattr(real, k) for k in ("SessionOptions", "ExecutionMode",
                                                                  "GraphOptimizationLevel", "__version__")})
    mod.InferenceSession = Session
    mod.get_available_providers = lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                           "CPUExecutionProvider"]
    return mod


@pytest.fixture
def recorded(monkeypatch) -> tuple[list, list]:
    """The backend on the stand-in onnxruntime: (sessions created, sessions run), filled as it goes."""
    pytest.importorskip("onnxruntime")
    sessions, runs = [], []
    monkeypatch.setattr(ob.OnnxRuntimeRuntime, "sdk", lambda self: fake_ort(sessions, runs))
    return sessions, runs


def test_trt_ep_caches_in_the_artifact_folder_and_compile_includes_the_first_run(tmp_path, recorded,
                                                                                 tiny_onnx):
    sessions, runs = recorded
    onnx = tiny_onnx[0]
    rt = ob.OnnxRuntimeRuntime()
    art = rt.compile(onnx, tmp_path / "art", precision="fp16",
                     providers=["TensorrtExecutionProvider", "CPUExecutionProvider"],
                     trt_options={"trt_max_workspace_size": 1 << 28})
    (name, opts), cpu = sessions[0].providers_given
    cache = tmp_path / "art" / "trt_cache"
    assert name == "TensorrtExecutionProvider" and cpu == "CPUExecutionProvider"
    assert opts["trt_fp16_enable"] is True and opts["trt_max_workspace_size"] == 1 << 28
    assert opts["trt_engine_cache_enable"] and opts["trt_timing_cache_enable"]
    assert Path(opts["trt_engine_cache_path"]) == cache == Path(opts["trt_timing_cache_path"])
    assert cache.is_dir()
    assert runs == [sessions[0]], "compile must run once so compile_s includes the engine build"
    assert "first run" in art.meta["compile_includes"] and art.meta["trt_cache_dir"] == "trt_cache"
    # a session later (the artifact moved) uses the cache inside its own folder
    moved = tmp_path / "moved"
    (tmp_path / "art").rename(moved)
    from edgeprune.runtimes.base import Artifact

    with rt.session(Artifact.load(moved)) as s:
        s.infer({"images": np.zeros((1, 3, 8, 8), np.float32)})
    later = dict(sessions[-1].providers_given[0][1])
    assert Path(later["trt_engine_cache_path"]) == moved / "trt_cache"


def test_cpu_only_compile_does_not_run_and_bad_trt_options_are_refused(tmp_path, recorded, tiny_onnx):
    _, runs = recorded
    onnx = tiny_onnx[0]
    rt = ob.OnnxRuntimeRuntime()
    art = rt.compile(onnx, tmp_path / "cpu")
    assert runs == [] and art.meta["compile_includes"] == "session creation"
    assert not (tmp_path / "cpu" / "trt_cache").exists()
    with pytest.raises(InvalidConfigError, match="trt_options"):
        rt.compile(onnx, tmp_path / "x", providers=["TensorrtExecutionProvider"], trt_options="fast")
