"""``edgeprune agent-pack`` and ``edgeprune profile ... --device`` (in-process, the local profile)."""

from __future__ import annotations

import json
import zipfile

from edgeprune.cli import main


def test_agent_pack_command(tmp_path, capsys):
    out = tmp_path / "agent.pyz"
    assert main(["agent-pack", str(out)]) == 0
    assert "__main__.py" in zipfile.ZipFile(out).namelist()
    assert out.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert "sha256" in capsys.readouterr().out


def test_profile_on_local_device(tmp_path, tiny_models, capsys):
    report = tmp_path / "r.json"
    rc = main(["profile", *map(str, tiny_models), "--device", "local", "--jobs-dir", str(tmp_path / "jobs"),
               "--min-seconds", "0.05", "--min-runs", "5", "--warmup-runs", "1", "--json", str(report)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "local" in text and "m8" in text and "m16" in text
    data = json.loads(report.read_text())
    assert data["local"]["error"] is None
    assert {r["latency"]["n"] >= 5 for r in data["local"]["results"].values()} == {True}
    assert (tmp_path / "jobs" / "local" / "results" / "m8.json").is_file()


def test_profile_device_rejects_runtime_flag(tmp_path, tiny_models, capsys):
    rc = main(["profile", str(tiny_models[0]), "--device", "local", "--runtime", "openvino"])
    assert rc == 1 and "device profile sets the runtime" in capsys.readouterr().err


def test_profile_device_python_is_passed_to_the_transport(tmp_path, tiny_models, monkeypatch):
    import edgeprune.devices.runner as runner

    seen = {}

    def fake(models, profiles, jobs_dir, **kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(runner, "profile_on_devices", fake)
    rc = main(["profile", str(tiny_models[0]), "--device", "local", "--python", "/opt/py38/bin/python3",
               "--jobs-dir", str(tmp_path / "jobs")])
    assert rc == 0 and seen["python"] == "/opt/py38/bin/python3"


def test_profile_python_needs_device(tiny_models, capsys):
    rc = main(["profile", str(tiny_models[0]), "--python", "python3.8"])
    assert rc == 1 and "--device" in capsys.readouterr().err
