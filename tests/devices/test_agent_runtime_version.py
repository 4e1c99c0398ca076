"""A job keyed by a runtime version: the agent reports its version (``env --runtime``), refuses a job
that expects another one, and results measured on another version are not current."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from edgeprune.devices import load_profile, prepare_job
from edgeprune.devices.agent import environment_report, run_job
from edgeprune.devices.jobs import current_results
from edgeprune.devices.protocol import Manifest
from edgeprune.errors import ProtocolError

FAST = {"min_s": 0.02, "warmup_s": 0.0, "warmup_runs": 2, "min_runs": 5, "max_repeats": 1}


def _ort_version() -> str:
    from edgeprune.runtimes import get

    return get("onnxruntime").version()


def test_manifest_runtime_version_is_optional_and_part_of_the_options_hash(tiny_models, tmp_path):
    prof = load_profile("x86-cpu")
    plain = prepare_job(tmp_path / "a", tiny_models, prof)
    keyed = prepare_job(tmp_path / "b", tiny_models, prof, runtime_version="1.2.3")
    assert "runtime_version" not in plain.to_dict()  # manifests without it are written as before
    assert keyed.to_dict()["runtime_version"] == "1.2.3"
    assert Manifest.from_dict(keyed.to_dict()) == keyed
    hashes = {plain.options_sha256(), keyed.options_sha256(),
              prepare_job(tmp_path / "c", tiny_models, prof, runtime_version="1.2.4").options_sha256()}
    assert len(hashes) == 3
    with pytest.raises(ProtocolError, match="runtime_version"):
        Manifest.from_dict({**keyed.to_dict(), "runtime_version": 12})


def test_agent_refuses_a_job_for_another_runtime_version(tiny_models, tmp_path):
    pytest.importorskip("onnxruntime")
    job = tmp_path / "job"
    prepare_job(job, tiny_models, load_profile("x86-cpu"), profile_options=FAST, runtime_version="0.0-other")
    with pytest.raises(ProtocolError, match=r"expects onnxruntime 0\.0-other, this device has"):
        run_job(job, emit=lambda e: None, tegrastats_s=0)
    assert not list((job / "results").glob("*.json")), "nothing is measured on the wrong version"


def test_results_of_another_runtime_version_are_not_current(tiny_models, tmp_path):
    pytest.importorskip("onnxruntime")
    job, prof, version = tmp_path / "job", load_profile("x86-cpu"), _ort_version()
    first = prepare_job(job, tiny_models, prof, profile_options=FAST, runtime_version=version)
    run_job(job, emit=lambda e: None, tegrastats_s=0)
    assert len(current_results(job, first)) == 2
    assert all(r["runtime_version"] == version for r in current_results(job, first).values())
    upgraded = prepare_job(job, tiny_models, prof, profile_options=FAST, runtime_version=version + "-next")
    assert current_results(job, upgraded) == {}, "measured on the old version: to be measured again"


def test_env_reports_the_runtime_version(agent_pyz, torch_shim):
    pytest.importorskip("onnxruntime")
    report = environment_report("onnxruntime", tegrastats_s=0)
    assert report["runtime_version"] == _ort_version()
    assert set(report["environment"]["runtimes"]) == {"onnxruntime"}  # only that SDK was asked
    env = {**os.environ, "PYTHONPATH": str(torch_shim)}  # as the device runs it: the zipapp, no torch
    out = subprocess.run([sys.executable, str(agent_pyz), "env", "--runtime", "onnxruntime",
                          "--tegrastats-seconds", "0"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["runtime"] == "onnxruntime" and got["runtime_version"] == _ort_version()
    assert got["agent"]["torch_loaded"] is False
    bad = subprocess.run([sys.executable, str(agent_pyz), "env", "--runtime", "nosuch"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "unknown runtime 'nosuch'" in bad.stderr
