"""The on-device agent as the device runs it: the zipapp, under a python where torch cannot be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest

from edgeprune.devices import load_profile, prepare_job
from edgeprune.devices.pack import agent_files, build_agent, check_imports
from edgeprune.errors import DeviceError

FAST = {"min_s": 0.05, "warmup_s": 0.01, "warmup_runs": 2, "min_runs": 10, "max_repeats": 1}


def run_agent(agent, job, shim, *extra):
    env = {**os.environ, "PYTHONPATH": str(shim)}
    return subprocess.run([sys.executable, str(agent), "run", str(job), "--tegrastats-seconds", "0", *extra],
                          capture_output=True, text=True, env=env, timeout=120)


def events(out) -> list[dict]:
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def edit_manifest(job, fn) -> None:
    path = job / "manifest.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_agent_archive_holds_only_torch_free_parts(agent_pyz, tmp_path):
    names = zipfile.ZipFile(agent_pyz).namelist()
    assert "__main__.py" in names and "edgeprune/errors.py" in names
    assert "edgeprune/runtimes/registry.py" in names and "edgeprune/devices/agent.py" in names
    assert "edgeprune/devices/profiles/jetson-agx-xavier.yaml" in names
    assert "edgeprune/_lazy.py" in names  # the lazy-attribute helper the packages' __init__ use
    assert "edgeprune/fileio.py" in names  # atomic writes and hashing, used by both packages
    allowed = ("edgeprune/runtimes/", "edgeprune/devices/", "edgeprune/__init__.py", "edgeprune/_lazy.py",
               "edgeprune/_version.py", "edgeprune/errors.py", "edgeprune/fileio.py", "__main__.py")
    assert all(n.startswith(allowed) for n in names), [n for n in names if not n.startswith(allowed)]
    assert not any("__pycache__" in n or "/pruning/" in n or "/models/" in n for n in names)
    # reproducible: the same code packs to the same bytes (the host skips re-uploading it)
    assert build_agent(tmp_path / "again.pyz").read_bytes() == agent_pyz.read_bytes()


def test_pack_refuses_code_that_imports_torch(tmp_path):
    files = agent_files()
    bad = tmp_path / "bad.py"
    bad.write_text("import torch.nn\n")
    with pytest.raises(DeviceError, match="imports torch"):
        check_imports({**files, "edgeprune/runtimes/bad.py": bad})
    bad.write_text("from edgeprune.pruning import plan\n")
    with pytest.raises(DeviceError, match="not part of the agent archive"):
        check_imports({**files, "edgeprune/runtimes/bad.py": bad})


def test_agent_profiles_and_resumes_without_torch(agent_pyz, tmp_path, tiny_models, torch_shim):
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("local"), profile_options=FAST)
    out = run_agent(agent_pyz, job, torch_shim)
    assert out.returncode == 0, out.stderr
    ev = events(out)
    assert [e["event"] for e in ev if e["event"] in ("start", "profiled", "done")] == \
        ["start", "profiled", "profiled", "done"]
    result = json.loads((job / "results" / "m8.json").read_text())
    assert result["status"] == "ok" and result["latency"]["median_ms"] > 0
    assert result["agent"]["torch_loaded"] is False and ".pyz" in result["agent"]["edgeprune_origin"]
    assert result["environment"]["runtimes"]["onnxruntime"]
    # interrupted job: one result lost -> only that candidate runs again
    mtime = (job / "results" / "m8.json").stat().st_mtime_ns
    (job / "results" / "m16.json").unlink()
    out = run_agent(agent_pyz, job, torch_shim)
    ev = events(out)
    assert [(e["event"], e.get("candidate")) for e in ev if e["event"] in ("skipped", "profiled")] == \
        [("skipped", "m8"), ("profiled", "m16")]
    assert (job / "results" / "m8.json").stat().st_mtime_ns == mtime
    # changed options make old results stale: everything is measured again
    edit_manifest(job, lambda d: d["profile_options"].update(min_runs=11))
    ev = events(run_agent(agent_pyz, job, torch_shim))
    assert sum(e["event"] == "profiled" for e in ev) == 2


@pytest.mark.parametrize(
    "tamper, message",
    [
        (lambda d: d["candidates"][0].update(sha256="0" * 64), "sha256"),
        (lambda d: d["candidates"][0].update(file="../../outside.onnx"), "must not contain '..'"),
        (lambda d: d["candidates"][0].update(file="/etc/passwd"), "must be relative"),
        (lambda d: d.update(protocol_version=99), "unknown protocol_version 99"),
        (lambda d: d["candidates"][0].update(id="../x"), "is invalid"),
    ],
    ids=["sha-mismatch", "dotdot", "absolute", "protocol-version", "bad-id"],
)
def test_agent_refuses_bad_jobs(agent_pyz, tmp_path, tiny_models, torch_shim, tamper, message):
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("local"), profile_options=FAST)
    edit_manifest(job, tamper)
    out = run_agent(agent_pyz, job, torch_shim)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    ev = events(out)
    assert ev[-1]["event"] == "error" and ev[-1]["kind"] == "protocol"
    assert not list((job / "results").glob("*.json")), "a refused job must measure nothing"


def test_agent_refuses_symlink_escaping_the_job(agent_pyz, tmp_path, tiny_models, torch_shim):
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("local"), profile_options=FAST)
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((job / "candidates" / "m8.onnx").read_bytes())
    (job / "candidates" / "m8.onnx").unlink()
    (job / "candidates" / "m8.onnx").symlink_to(outside)  # same bytes, same sha: only the path is wrong
    out = run_agent(agent_pyz, job, torch_shim)
    assert out.returncode == 2 and "resolves outside the job folder" in out.stderr


def test_agent_records_failed_candidates_and_goes_on(agent_pyz, tmp_path, tiny_models, torch_shim):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    job = tmp_path / "job"
    prepare_job(job, [broken, *tiny_models], load_profile("local"), profile_options=FAST)
    out = run_agent(agent_pyz, job, torch_shim)
    assert out.returncode == 0, out.stderr
    failed = json.loads((job / "results" / "broken.json").read_text())
    assert failed["status"] == "failed" and failed["error"]
    assert json.loads((job / "results" / "m16.json").read_text())["status"] == "ok"
    assert events(out)[-1] == {"event": "done", "ok": 2, "skipped": 0, "failed": 1}
