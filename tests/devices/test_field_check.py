"""The field check: here (no TensorRT) it runs up to where TensorRT is needed and says so; with
stand-ins for TensorRT, libcudart and trtexec its whole flow runs and a wrong engine output fails it.
A real Jetson run is what verifies a device (README, "verified where")."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import trt_fakes as fk  # tests/runtimes is on pytest's pythonpath

from edgeprune.devices import field_check as fc
from edgeprune.devices import field_model

IO = [["images", "INPUT", list(field_model.INPUT_SHAPE), "FLOAT"],
      ["output", "OUTPUT", list(field_model.OUTPUT_SHAPE), "FLOAT"]]


def test_shipped_model_matches_its_formula_and_reference():
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper

    model = onnx.load_from_string(field_model.onnx_bytes())
    stored = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w, b = field_model.weights()
    np.testing.assert_array_equal(stored["W"], w)
    np.testing.assert_array_equal(stored["B"], b)
    x = field_model.example_input(seed=3)
    y = ort.InferenceSession(field_model.onnx_bytes(), providers=["CPUExecutionProvider"]).run(
        None, {"images": x})[0]
    np.testing.assert_allclose(y, field_model.reference(x), atol=1e-5)
    assert float(y.max()) > 0.1  # the ReLU does not zero everything: the comparison means something


def test_field_check_here_runs_until_tensorrt_is_needed_and_says_so(agent_pyz, tmp_path, torch_shim):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: this test is about a machine without it")
    out = tmp_path / "report.json"
    env = {"PYTHONPATH": str(torch_shim), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, str(agent_pyz), "field-check", "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == fc.EXIT_INCOMPLETE, proc.stderr
    report = json.loads(out.read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert report["format"] == "edgeprune-field-check" and report["agent"]["torch_loaded"] is False
    assert checks["tensorrt"]["status"] == "not_run"
    assert "TensorRT is not installed" in checks["tensorrt"]["reason"]
    for name in ("engine_fp32", "engine_fp16", "engine_int8_calibrated", "engine_dla", "trtexec",
                 "session_from_another_thread"):
        assert checks[name]["status"] == "not_run" and "needs" in checks[name]["reason"], checks[name]
    assert checks["jetpack"]["status"] in ("not_run", "ok")
    assert checks["cuda"]["status"] in ("not_run", "ok")  # no GPU here: said, not failed
    assert report["summary"]["ok"] + report["summary"]["not_run"] == len(checks)
    assert report["verdict"].startswith("incomplete: TensorRT paths not exercised")
    assert "environment" in report and report["environment"]["python"]


@pytest.fixture
def fake_device(monkeypatch, tmp_path):
    """TensorRT computing the model's exact reference, libcudart, trtexec and one DLA core."""
    from edgeprune.runtimes import cuda_runtime
    from edgeprune.runtimes import tensorrt_backend as tb

    exact = lambda x: field_model.reference(x).astype(np.float32)  # noqa: E731
    trt = fk.make_tensorrt(io=IO, compute=exact, dla_cores=1)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    lib = fk.FakeCudart(name=b"Orin", cc=(8, 7))
    cuda_runtime.reset()
    monkeypatch.setattr(cuda_runtime, "load_cudart", lambda: cuda_runtime.CudartApi(lib, "fake"))
    exe = fk.write_fake_trtexec(tmp_path, io=IO)
    monkeypatch.setattr(tb.trtexec, "find_trtexec", lambda: str(exe))
    fast = {"warmup_runs": 1, "warmup_s": 0.0, "min_runs": 3, "min_s": 0.0, "max_repeats": 1}
    monkeypatch.setattr(fc, "FAST_PROFILE", fast)
    yield trt, exe
    cuda_runtime.reset()


def test_full_flow_with_stand_ins(fake_device, tmp_path):
    trt, exe = fake_device
    events = []
    code = fc.run_field_check(str(tmp_path / "r.json"), str(tmp_path / "work"), emit=events.append)
    report = json.loads((tmp_path / "r.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert code == fc.EXIT_OK, [(c["name"], c.get("error") or c.get("reason")) for c in report["checks"]]
    assert checks["cuda"]["cuda_path"] == "cudart" and checks["cuda"]["gpu_name"] == "Orin"
    assert checks["engine_int8_calibrated"]["precision"] == "int8"
    assert (tmp_path / "work" / "int8" / "calibration.cache").is_file()  # calibrated, not placeholder ranges
    (int8_build,) = [b for b in trt.builds if b["int8"]]
    assert len(int8_build["calibration"]) == 64  # ranges from the calibrator's batches, not placeholders
    assert checks["engine_dla"]["precision"] == "fp16"
    assert checks["trtexec"]["engine"] == checks["engine_fp16"]["engine"]  # one key whichever builder
    assert checks["trtexec"]["trtexec_gpu_compute_median_ms"] > 0
    assert checks["session_from_another_thread"]["status"] == "ok"
    assert report["verdict"].startswith("ok") and events[-1]["event"] == "field_check_done"
    assert any("--loadEngine" in " ".join(c) for c in fk.calls_of(exe))


def test_a_wrong_engine_output_fails_the_check(fake_device, tmp_path, monkeypatch):
    trt, _ = fake_device
    wrong = fk.make_tensorrt(io=IO, compute=lambda x: field_model.reference(x).astype(np.float32) * 1.5)
    monkeypatch.setitem(sys.modules, "tensorrt", wrong)
    code = fc.run_field_check(str(tmp_path / "r.json"), str(tmp_path / "work"), emit=lambda e: None)
    report = json.loads((tmp_path / "r.json").read_text())
    checks = {c["name"]: c for c in report["checks"]}
    assert code == fc.EXIT_FAILED and checks["engine_fp32"]["status"] == "failed"
    assert "differs from the reference" in checks["engine_fp32"]["error"]
    assert checks["engine_dla"]["status"] == "not_run"  # this stand-in has no DLA cores: said so


def test_summary_lines_name_each_check():
    report = {"checks": [{"name": "cuda", "status": "not_run", "reason": "no CUDA here"}],
              "verdict": "incomplete"}
    assert fc.summary_lines(report) == ["cuda                           not_run  no CUDA here",
                                        "verdict: incomplete"]


@pytest.mark.ssh
def test_host_command_runs_the_field_check_over_ssh(sshd, tmp_path, torch_shim, agent_pyz):
    from edgeprune.devices.remote import RemoteDevice, RetryPolicy

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: this test is about a machine without it")
    dev = RemoteDevice(sshd.target(), python=sys.executable, remote_dir=str(tmp_path / "device"),
                       env={"PYTHONPATH": str(torch_shim)}, retry=RetryPolicy(attempts=1), agent=agent_pyz,
                       name="testdev")
    seen = []
    code, report = dev.field_check(tmp_path / "here.json", on_event=seen.append)
    assert code == fc.EXIT_INCOMPLETE
    assert json.loads((tmp_path / "here.json").read_text()) == report  # fetched, byte for byte
    assert (tmp_path / "device" / "field-check" / "report.json").is_file()  # written on the device
    assert {c["name"] for c in report["checks"]} >= {"cuda", "tensorrt", "engine_fp16", "trtexec"}
    assert any(e.get("event") == "check" and e["device"] == "testdev" for e in seen)


def test_cli_field_check_here(tmp_path, capsys, monkeypatch):
    from edgeprune.cli import main

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: this test is about a machine without it")
    monkeypatch.chdir(tmp_path)
    assert main(["field-check", "--out", "r.json"]) == fc.EXIT_INCOMPLETE
    out = capsys.readouterr().out
    assert "verdict: incomplete" in out and "engine_int8_calibrated" in out
    assert json.loads((tmp_path / "r.json").read_text())["exit_code"] == fc.EXIT_INCOMPLETE
