"""Remote profiling against a real OpenSSH server on 127.0.0.1; the 'device' python cannot import torch."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import pytest

from edgeprune.devices import RemoteDevice, RetryPolicy, load_profile, prepare_job
from edgeprune.devices.jobs import job_results
from edgeprune.errors import DeviceUnreachableError, ProtocolError

pytestmark = pytest.mark.ssh
FAST = {"min_s": 0.05, "warmup_s": 0.01, "warmup_runs": 2, "min_runs": 10, "max_repeats": 1}


def _device(sshd, tmp_path, python, shim, agent, attempts=3, **kw) -> RemoteDevice:
    return RemoteDevice(sshd.target(), python=python, remote_dir=str(tmp_path / "device"),
                        env={"PYTHONPATH": str(shim)}, retry=RetryPolicy(attempts=attempts, backoff_s=0.05),
                        agent=agent, name="testdev", **kw)


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening: connections are refused
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _events(job_dir):
    return [json.loads(line) for line in (job_dir / "events.jsonl").read_text().splitlines()]


def test_full_remote_profile_of_two_candidates(sshd, tmp_path, tiny_models, device_python, torch_shim,
                                               agent_pyz):
    job = tmp_path / "job"
    manifest = prepare_job(job, tiny_models, load_profile("x86-cpu"), profile_options=FAST)
    seen = []
    dev = _device(sshd, tmp_path, device_python, torch_shim, agent_pyz)
    results = dev.run_job(job, on_event=seen.append)

    assert sorted(results) == ["m16", "m8"]
    for cid, r in results.items():
        assert r["status"] == "ok", r.get("error")
        assert r["latency"]["median_ms"] > 0 and r["latency"]["n"] >= FAST["min_runs"]
        assert r["latency"]["p90_ms"] >= r["latency"]["median_ms"]
        assert r["sha256"] == next(c.sha256 for c in manifest.candidates if c.id == cid)
        # measured by the zipapp under an interpreter where torch cannot be imported
        assert r["agent"]["torch_loaded"] is False
        assert r["agent"]["edgeprune_origin"].endswith(".pyz/edgeprune")
        assert r["runtime"] == "onnxruntime" and r["runtime_version"]
        assert (job / "results" / f"{cid}.json").is_file()
    kinds = [e["event"] for e in seen]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("profiled") == 2
    # the device folder mirrors the job; the agent was uploaded once under its hash
    assert len(list((tmp_path / "device").glob("agent-*.pyz"))) == 1
    # the shim really forbids torch for that interpreter on the device
    probe = subprocess.run(["ssh", *sshd.target().args(), "127.0.0.1",
                            f"env PYTHONPATH={torch_shim} {device_python} -c 'import torch'"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "torch is not available" in probe.stderr

    # a second run measures nothing again and does not even start the agent
    seen.clear()
    again = dev.run_job(job, on_event=seen.append)
    assert again == results
    assert [e["event"] for e in seen] == ["done"]


def test_resume_after_connection_cut(sshd, tmp_path, tiny_models, device_python, torch_shim, agent_pyz):
    job = tmp_path / "job"
    slow = {**FAST, "min_s": 0.4}  # long enough that the cut lands before the next candidate ends
    models = [*tiny_models, tiny_models[0].with_name("m8b.onnx")]
    models[2].write_bytes(tiny_models[0].read_bytes() + b"")  # same bytes, another id
    prepare_job(job, models, load_profile("x86-cpu"), profile_options=slow)
    device_results = tmp_path / "device" / "jobs" / "x86-cpu" / "results"
    first = {}

    def cut_after_first(event):
        if event["event"] == "profiled" and not first:
            path = device_results / f"{event['candidate']}.json"
            first.update(id=event["candidate"], mtime=path.stat().st_mtime_ns)
            for pid in sshd.session_pids():  # the connection drops mid-job
                os.kill(pid, signal.SIGKILL)

    dev = _device(sshd, tmp_path, device_python, torch_shim, agent_pyz, attempts=4)
    results = dev.run_job(job, on_event=cut_after_first)

    assert sorted(results) == ["m16", "m8", "m8b"] and all(r["status"] == "ok" for r in results.values())
    events = _events(job)
    assert any(e["event"] == "retry" for e in events), "the cut must have caused a retry"
    profiled = [e["candidate"] for e in events if e["event"] == "profiled"]
    assert profiled.count(first["id"]) == 1, f"{first['id']} was measured again: {profiled}"
    # the device-side result of the first candidate was not rewritten
    assert (device_results / f"{first['id']}.json").stat().st_mtime_ns == first["mtime"]
    starts = [e for e in events if e["event"] == "start"]
    assert len(starts) >= 2 and starts[-1]["pending"] < 3


def test_results_on_device_are_fetched_not_remeasured(sshd, tmp_path, tiny_models, device_python,
                                                      torch_shim, agent_pyz):
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("x86-cpu"), profile_options=FAST)
    dev = _device(sshd, tmp_path, device_python, torch_shim, agent_pyz)
    first = dev.run_job(job)
    for f in (job / "results").glob("*.json"):  # the host lost its copies
        f.unlink()
    (job / "events.jsonl").unlink()
    again = dev.run_job(job)
    assert {k: v["finished_at"] for k, v in again.items()} == {k: v["finished_at"] for k, v in first.items()}
    assert not any(e["event"] == "start" for e in _events(job))


def test_tampered_candidate_is_refused_by_the_agent(sshd, tmp_path, tiny_models, device_python,
                                                    torch_shim, agent_pyz):
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("x86-cpu"), profile_options=FAST)
    with open(job / "candidates" / "m8.onnx", "ab") as f:  # changed after the manifest was written
        f.write(b"\0")
    dev = _device(sshd, tmp_path, device_python, torch_shim, agent_pyz)
    with pytest.raises(ProtocolError, match="sha256"):
        dev.run_job(job)
    assert job_results(job) == {}


def test_unreachable_host_fails_fast_after_retries(tmp_path, tiny_models, agent_pyz):
    from edgeprune.devices.remote import SshTarget
    from edgeprune.devices.runner import run_local_job

    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("local"), profile_options=FAST)
    run_local_job(job)  # measured before: must survive the failure
    before = {p.name: p.read_bytes() for p in (job / "results").glob("*.json")}
    (job / "results" / "m16.json").unlink()
    dev = RemoteDevice(SshTarget("127.0.0.1", port=_closed_port(), config_file="/dev/null", connect_timeout=2,
                                 options=["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]),
                       retry=RetryPolicy(attempts=3, backoff_s=0.01), agent=agent_pyz, name="gone")
    t0 = time.perf_counter()
    with pytest.raises(DeviceUnreachableError, match=r"after 3 attempts.*1 of 2 results are kept"):
        dev.run_job(job)
    assert time.perf_counter() - t0 < 10
    assert [e["attempt"] for e in _events(job) if e["event"] == "retry"] == [1, 2, 3]
    assert (job / "results" / "m8.json").read_bytes() == before["m8.json"]


def test_profile_on_two_devices_at_once(sshd, tmp_path, tiny_models, device_python, torch_shim, agent_pyz):
    from edgeprune.devices import profile_on_devices

    # a user's own profile file, reaching the 'device' only through its ssh section
    remote = tmp_path / "test-box.yaml"
    remote.write_text(
        "name: test-box\nruntime: onnxruntime\nthreads: 1\nchannel_multiple: 8\ninput_size: 32\n"
        f"ssh:\n  host: 127.0.0.1\n  port: {sshd.port}\n  identity_file: {sshd.key}\n"
        f"  python: {device_python}\n  remote_dir: {tmp_path / 'device'}\n"
        f"  env: {{PYTHONPATH: {torch_shim}}}\n"
        f"  options: [UserKnownHostsFile={sshd.known_hosts}, StrictHostKeyChecking=accept-new]\n"
    )
    seen = []
    jobs = profile_on_devices(tiny_models, ["local", remote], tmp_path / "work", profile_options=FAST,
                              on_event=seen.append, config_file="/dev/null", agent=agent_pyz, progress=False)
    assert set(jobs) == {"local", "test-box"}
    for name, job in jobs.items():
        assert job.error is None, job.error
        assert set(job.medians_ms()) == {"m8", "m16"} and min(job.medians_ms().values()) > 0
        assert job.job_dir == tmp_path / "work" / name
    remote_result = jobs["test-box"].results["m8"]
    assert remote_result["agent"]["torch_loaded"] is False
    assert remote_result["runtime_options"]["threads"] == 1
    assert {e["device"] for e in seen} == {"local", "test-box"}


def test_example_script_against_the_test_device(sshd, tmp_path, tiny_models, device_python):
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "profile_remote_device.py"
    out = subprocess.run(
        [sys.executable, str(script), "--host", "127.0.0.1", "--port", str(sshd.port),
         "--identity", str(sshd.key), "--ssh-option", f"UserKnownHostsFile={sshd.known_hosts}",
         "--ssh-option", "StrictHostKeyChecking=accept-new",
         "--device", "x86-cpu", "--python", device_python, "--remote-dir", str(tmp_path / "device"),
         "--seconds", "0.05", "--work", str(tmp_path / "work"), *map(str, tiny_models)],
        capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "m8" in out.stdout and "m16" in out.stdout and "median" in out.stdout
    assert (tmp_path / "work" / "x86-cpu" / "results" / "m16.json").is_file()
