"""What the device was doing while it was measured: power mode, clocks, governor, versions.

Runs on the device inside the agent (stdlib only). A command that is missing, fails or needs root is
recorded as unavailable, never raised. Setup checks turn the record into warnings such as "clocks
are not locked", which travel with every result so nobody trusts a number taken at idle clocks.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Optional

from edgeprune.runtimes.environment import cpu_model

CHECK_NAMES = ("clocks_locked", "power_mode", "governor_performance")

# L4T release -> JetPack (NVIDIA's release notes and Jetson archive); used when the nvidia-jetpack
# package is absent. 36.4.2 shipped as a JetPack 6.1 update; 35.6.1 is JetPack 5.1.5, 36.4.4 is 6.2.1,
# 36.5.0 is 6.2.2. A release missing here is answered by its series' latest entry, flagged as inferred.
_JETPACK = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1",
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4",
    "32.7.5": "4.6.5", "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2",
    "35.5.0": "5.1.3", "35.6.0": "5.1.4", "35.6.1": "5.1.5", "36.2.0": "6.0 DP", "36.3.0": "6.0",
    "36.4.0": "6.1", "36.4.2": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1", "36.5.0": "6.2.2",
}


def jetpack_for(l4t: str | None) -> tuple[str | None, bool]:
    """(JetPack version, inferred?) for an L4T release: exact from the table, else the latest listed
    release of the same major.minor series at or below it (inferred=True), else (None, False)."""
    if not l4t:
        return None, False
    if l4t in _JETPACK:
        return _JETPACK[l4t], False

    def key(v: str) -> tuple:
        return tuple(int(p) for p in v.split(".") if p.isdigit())

    series = [v for v in _JETPACK if key(v)[:2] == key(l4t)[:2] and key(v) <= key(l4t)]
    return (_JETPACK[max(series, key=key)], True) if series else (None, False)


def run_command(argv: Sequence[str], timeout: float = 10.0) -> dict[str, Any]:
    """Run a command; ``{"available": bool, "returncode", "stdout", "stderr"}``, never raises."""
    if shutil.which(argv[0]) is None:
        return {"available": False, "error": f"'{argv[0]}' not found"}
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "available": out.returncode == 0,
        "returncode": out.returncode,
        "stdout": out.stdout,
        "stderr": out.stderr.strip()[-500:],
    }


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """Parse ``nvpmodel -q``: ``{"mode_name": "MAXN", "mode_id": 0}`` (None where absent)."""
    name = re.search(r"NV Power Mode\s*:\s*(\S+)", text)
    mode_id = None
    if name:
        after = text[name.end():].split()
        if after and after[0].isdigit():
            mode_id = int(after[0])
    return {"mode_name": name.group(1) if name else None, "mode_id": mode_id}


def _freqs(text: str) -> dict[str, int]:
    pairs = re.findall(r"(MinFreq|MaxFreq|CurrentFreq|FreqOverride)=(\d+)", text)
    return {k.lower(): int(v) for k, v in pairs}


def parse_jetson_clocks(text: str) -> dict[str, Any]:
    """Parse ``jetson_clocks --show`` into CPU/GPU/EMC frequencies and a ``locked`` verdict.

    Clocks count as locked when every online CPU and the GPU run with MinFreq == MaxFreq (what
    ``jetson_clocks`` sets) and, where reported, the EMC frequency override is on.
    """
    cpus, gpu, emc = [], None, None
    for line in text.splitlines():
        line = line.strip()
        m = re.match(r"cpu(\d+):\s*Online=(\d)", line)
        if m:
            gov = re.search(r"Governor=(\S+)", line)
            cpus.append({"cpu": int(m.group(1)), "online": m.group(2) == "1",
                         "governor": gov.group(1) if gov else None, **_freqs(line)})
        elif line.startswith("GPU ") or line.startswith("GPU:"):
            gpu = _freqs(line)
        elif line.startswith("EMC "):
            emc = _freqs(line)
    soc = re.search(r"SOC family:\s*(\S+)", text)
    mode = re.search(r"NV Power Mode:\s*(\S+)", text)
    online = [c for c in cpus if c["online"]]
    locked: Optional[bool] = None
    if online or gpu:
        parts = [c.get("minfreq") == c.get("maxfreq") for c in online]
        if gpu and "minfreq" in gpu:
            parts.append(gpu["minfreq"] == gpu.get("maxfreq"))
        if emc and "freqoverride" in emc:
            parts.append(emc["freqoverride"] == 1)
        locked = all(parts) if parts else None
    return {
        "soc": soc.group(1) if soc else None,
        "power_mode": mode.group(1) if mode else None,
        "cpus": cpus,
        "gpu": gpu,
        "emc": emc,
        "locked": locked,
    }


def parse_tegra_release(text: str) -> dict[str, Any]:
    """Parse ``/etc/nv_tegra_release`` (``# R35 (release), REVISION: 4.1, ...``) into the L4T version."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    if not m:
        return {"l4t": None, "jetpack": None}
    rev = m.group(2)
    l4t = f"{m.group(1)}.{rev if rev.count('.') else rev + '.0'}"
    board = re.search(r"BOARD:\s*([^,]+)", text)
    jetpack, inferred = jetpack_for(l4t)
    out = {"l4t": l4t, "jetpack": jetpack, "board": board.group(1).strip() if board else None}
    if inferred:
        out["jetpack_inferred"] = True  # not in the table: the series' latest known release
    return out


def sample_tegrastats(seconds: float = 1.0, interval_ms: int = 250) -> dict[str, Any]:
    """Run ``tegrastats`` for about ``seconds`` and return its lines (RAM, CPU load, temperatures)."""
    exe = shutil.which("tegrastats")
    if exe is None:
        return {"available": False, "error": "'tegrastats' not found"}
    try:
        proc = subprocess.Popen([exe, "--interval", str(interval_ms)], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
    except OSError as exc:
        return {"available": False, "error": str(exc)}
    time.sleep(seconds)
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=3)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return {"available": bool(lines), "lines": lines[-4:]}


def cpu_governors() -> list[str]:
    """The distinct scaling governors of all CPUs (empty when cpufreq is not exposed)."""
    govs = set()
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor"):
        try:
            with open(path, encoding="utf-8") as f:
                govs.add(f.read().strip())
        except OSError:
            continue
    return sorted(govs)


def _jetson(tegrastats_s: float) -> dict[str, Any]:
    info: dict[str, Any] = {}
    try:
        with open("/etc/nv_tegra_release", encoding="utf-8") as f:
            info["release"] = parse_tegra_release(f.read())
    except OSError as exc:
        info["release"] = {"l4t": None, "jetpack": None, "error": str(exc)}
    pkg = run_command(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"])
    if pkg.get("available"):
        info["release"]["jetpack_package"] = pkg["stdout"].strip()
    nvp = run_command(["nvpmodel", "-q"])
    info["nvpmodel"] = parse_nvpmodel(nvp["stdout"]) if nvp.get("available") else nvp
    clocks = run_command(["jetson_clocks", "--show"])
    if not clocks.get("available") and hasattr(os, "geteuid") and os.geteuid() != 0:
        clocks = run_command(["sudo", "-n", "jetson_clocks", "--show"])  # needs root; never prompts
    info["jetson_clocks"] = parse_jetson_clocks(clocks["stdout"]) if clocks.get("available") else clocks
    info["tegrastats"] = sample_tegrastats(tegrastats_s) if tegrastats_s > 0 else {"available": False}
    return info


def collect(tegrastats_s: float = 1.0, runtime: str | None = None) -> dict[str, Any]:
    """The device's environment record (platform, CPU, governors, Jetson state, runtime versions).

    ``runtime`` limits the SDK versions recorded to that one (importing every SDK costs seconds).
    """
    from edgeprune.runtimes.registry import names, sdk_version

    env: dict[str, Any] = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "governors": cpu_governors(),
        "is_jetson": os.path.exists("/etc/nv_tegra_release"),
        "runtimes": {n: sdk_version(n) for n in ([runtime] if runtime else names())},
    }
    try:  # the runtimes package's own record (threads, flags), when that module is present
        from edgeprune.runtimes import environment as rt_env

        env["runtime_environment"] = rt_env.collect(runtime_name=runtime)
    except Exception as exc:  # never let an optional record stop a measurement
        env["runtime_environment"] = {"available": False, "error": f"{type(exc).__name__}: {exc}"}
    if env["is_jetson"]:
        env["jetson"] = _jetson(tegrastats_s)
    return env


def default_checks(env: dict[str, Any]) -> list[Any]:
    """Checks run when a job names none: Jetson clocks and power mode, else the CPU governor."""
    return ["power_mode", "clocks_locked"] if env.get("is_jetson") else ["governor_performance"]


def evaluate_checks(env: dict[str, Any], checks: Optional[Sequence[Any]]) -> list[dict[str, Any]]:
    """Evaluate setup checks on an environment record: ``[{"name", "ok", "detail"}]`` (ok None = unknown)."""
    out = []
    for item in default_checks(env) if checks is None else checks:
        name, expected = (next(iter(item.items())) if isinstance(item, dict) else (item, None))
        ok, detail = _CHECKS[name](env, expected)
        out.append({"name": name, "ok": ok, "detail": detail})
    return out


def warnings_from(checks: Sequence[dict[str, Any]]) -> list[str]:
    """Warning lines for checks that failed or could not be verified."""
    return [f"{c['name']}: {c['detail']}" for c in checks if c["ok"] is not True]


def _check_clocks(env: dict[str, Any], expected: Any):
    clocks = env.get("jetson", {}).get("jetson_clocks", {})
    locked = clocks.get("locked")
    if locked is None:
        why = clocks.get("error") or clocks.get("stderr") or "not a Jetson or output not understood"
        return None, f"could not verify clocks ({why}); run 'sudo jetson_clocks' before measuring"
    if locked:
        return True, "clocks locked (MinFreq == MaxFreq)"
    return False, "clocks are not locked: run 'sudo jetson_clocks' so latency is not measured at idle clocks"


def _check_power_mode(env: dict[str, Any], expected: Any):
    mode = env.get("jetson", {}).get("nvpmodel", {}).get("mode_name")
    if mode is None:
        return None, "could not read the power mode ('nvpmodel -q')"
    if expected is not None and str(mode) != str(expected):
        return False, f"power mode is {mode}, profile expects {expected} (sudo nvpmodel -m <id>)"
    return True, f"power mode {mode}"


def _check_governor(env: dict[str, Any], expected: Any):
    want = expected or "performance"
    govs = env.get("governors") or []
    if not govs:
        return None, "CPU frequency governor not exposed (/sys/devices/system/cpu/*/cpufreq); cannot verify"
    if govs != [want]:
        return False, f"CPU governor is {','.join(govs)}, not '{want}': latency varies with frequency scaling"
    return True, f"governor {want}"


_CHECKS = {"clocks_locked": _check_clocks, "power_mode": _check_power_mode,
           "governor_performance": _check_governor}
