"""Parsers of Jetson tool outputs (sample texts from JetPack 4/5 devices) and the setup checks."""

from __future__ import annotations

from edgeprune.devices import environment as env

NVPMODEL = "NV Fan Mode:quiet\nNV Power Mode: MAXN\n0\n"
NVPMODEL_NX = "NV Power Mode: MODE_15W_6CORE\n2\n"

CLOCKS_IDLE = """SOC family:tegra194  Machine:Jetson-AGX
Online CPUs: 0-7
cpu0: Online=1 Governor=schedutil MinFreq=1190400 MaxFreq=2265600 CurrentFreq=1190400 IdleStates: C1=1 c6=1
cpu1: Online=1 Governor=schedutil MinFreq=1190400 MaxFreq=2265600 CurrentFreq=2265600 IdleStates: C1=1 c6=1
cpu7: Online=0 Governor=schedutil MinFreq=1190400 MaxFreq=2265600 CurrentFreq=1190400 IdleStates: C1=1 c6=1
GPU MinFreq=318750000 MaxFreq=1377000000 CurrentFreq=318750000
EMC MinFreq=204000000 MaxFreq=2133000000 CurrentFreq=2133000000 FreqOverride=0
Fan: PWM=0
NV Power Mode: MAXN
"""
CLOCKS_LOCKED = """SOC family:tegra194  Machine:Jetson-AGX
Online CPUs: 0-7
cpu0: Online=1 Governor=schedutil MinFreq=2265600 MaxFreq=2265600 CurrentFreq=2265600
cpu1: Online=1 Governor=schedutil MinFreq=2265600 MaxFreq=2265600 CurrentFreq=2265600
GPU MinFreq=1377000000 MaxFreq=1377000000 CurrentFreq=1377000000
EMC MinFreq=204000000 MaxFreq=2133000000 CurrentFreq=2133000000 FreqOverride=1
Fan: PWM=255
NV Power Mode: MAXN
"""
RELEASE = "# R32 (release), REVISION: 4.3, GCID: 21589087, BOARD: t186ref, EABI: aarch64\n"
RELEASE_ORIN = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64\n"


def test_parse_nvpmodel():
    assert env.parse_nvpmodel(NVPMODEL) == {"mode_name": "MAXN", "mode_id": 0}
    assert env.parse_nvpmodel(NVPMODEL_NX) == {"mode_name": "MODE_15W_6CORE", "mode_id": 2}
    assert env.parse_nvpmodel("garbage") == {"mode_name": None, "mode_id": None}


def test_parse_jetson_clocks_idle_and_locked():
    idle = env.parse_jetson_clocks(CLOCKS_IDLE)
    assert idle["soc"] == "tegra194" and idle["power_mode"] == "MAXN"
    assert len(idle["cpus"]) == 3 and idle["cpus"][2]["online"] is False
    assert idle["cpus"][0] == {"cpu": 0, "online": True, "governor": "schedutil", "minfreq": 1190400,
                               "maxfreq": 2265600, "currentfreq": 1190400}
    assert idle["gpu"]["maxfreq"] == 1377000000 and idle["emc"]["freqoverride"] == 0
    assert idle["locked"] is False
    assert env.parse_jetson_clocks(CLOCKS_LOCKED)["locked"] is True
    assert env.parse_jetson_clocks("")["locked"] is None


def test_parse_tegra_release():
    assert env.parse_tegra_release(RELEASE) == {"l4t": "32.4.3", "jetpack": "4.4", "board": "t186ref"}
    assert env.parse_tegra_release(RELEASE_ORIN)["jetpack"] == "5.1.2"
    assert env.parse_tegra_release("")["l4t"] is None


def test_checks_warn_on_unlocked_clocks_and_wrong_power_mode():
    jetson = {"is_jetson": True, "jetson": {"jetson_clocks": env.parse_jetson_clocks(CLOCKS_IDLE),
                                            "nvpmodel": env.parse_nvpmodel(NVPMODEL_NX)}}
    checks = env.evaluate_checks(jetson, None)  # defaults on a Jetson: power mode + clocks
    assert [c["name"] for c in checks] == ["power_mode", "clocks_locked"]
    assert checks[1]["ok"] is False and "jetson_clocks" in checks[1]["detail"]
    wrong_mode = env.evaluate_checks(jetson, [{"power_mode": "MAXN"}])
    assert wrong_mode[0]["ok"] is False and "MODE_15W_6CORE" in wrong_mode[0]["detail"]
    jetson["jetson"]["jetson_clocks"] = env.parse_jetson_clocks(CLOCKS_LOCKED)
    jetson["jetson"]["nvpmodel"] = env.parse_nvpmodel(NVPMODEL)
    assert env.warnings_from(env.evaluate_checks(jetson, [{"power_mode": "MAXN"}, "clocks_locked"])) == []


def test_governor_check_and_missing_commands():
    assert env.evaluate_checks({"governors": ["performance"]}, None)[0]["ok"] is True
    bad = env.evaluate_checks({"governors": ["powersave"]}, None)[0]
    assert bad["ok"] is False and "powersave" in bad["detail"]
    unknown = env.evaluate_checks({"governors": []}, ["governor_performance", "clocks_locked"])
    assert [c["ok"] for c in unknown] == [None, None] and len(env.warnings_from(unknown)) == 2
    missing = env.run_command(["edgeprune-no-such-command", "-q"])
    assert missing["available"] is False and "not found" in missing["error"]


def test_sample_tegrastats_reads_the_tool_or_says_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert env.sample_tegrastats(0.01) == {"available": False, "error": "'tegrastats' not found"}
    fake = tmp_path / "tegrastats"
    fake.write_text("#!/bin/sh\nwhile true; do echo 'RAM 1234/7620MB CPU [5%@1420]'; sleep 0.02; done\n")
    fake.chmod(0o755)
    sample = env.sample_tegrastats(0.3, interval_ms=20)
    assert sample["available"] is True and sample["lines"]
    assert all(line.startswith("RAM 1234/7620MB") for line in sample["lines"])


def test_collect_on_this_machine_records_runtime_and_no_jetson():
    record = env.collect(tegrastats_s=0, runtime="onnxruntime")
    assert record["is_jetson"] is False and "jetson" not in record
    assert record["runtimes"]["onnxruntime"] and record["cpu_count"] >= 1


def test_jetpack_table_knows_recent_releases():
    rel = "# R{} (release), REVISION: {}, GCID: 38749957, BOARD: generic, EABI: aarch64, DATE: Tue Jan 14\n"
    cases = {("35", "6.1"): "5.1.5", ("36", "4.2"): "6.1", ("36", "4.3"): "6.2", ("36", "4.4"): "6.2.1",
             ("36", "5.0"): "6.2.2", ("35", "6.0"): "5.1.4"}
    for (major, revision), jetpack in cases.items():
        got = env.parse_tegra_release(rel.format(major, revision))
        assert got["jetpack"] == jetpack and "jetpack_inferred" not in got, (major, revision, got)
    # 36.5 is written "REVISION: 5.0"; a release newer than the table is answered by its series, flagged
    assert env.parse_tegra_release(rel.format("36", "5"))["l4t"] == "36.5.0"
    later = env.parse_tegra_release(rel.format("35", "6.2"))
    assert later["jetpack"] == "5.1.5" and later["jetpack_inferred"] is True
    assert env.jetpack_for("38.9.0") == (None, False) and env.jetpack_for(None) == (None, False)
