"""What a latency number was measured on: runtime and version, precision, threads, CPU, OS, governor.
Recorded beside every LatencyStats so results from different machines are never confused.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GOVERNOR = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip().strip("\x00") or None
    except OSError:
        return None


def cpu_model() -> str:
    """The CPU model ("model name" on x86; on ARM boards the device-tree model or "Hardware")."""
    text = _read("/proc/cpuinfo") or ""
    for key in ("model name", "hardware", "cpu model"):
        for line in text.splitlines():
            if line.lower().startswith(key) and ":" in line:
                return line.split(":", 1)[1].strip()
    return _read("/proc/device-tree/model") or platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (affinity), falling back to the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def collect(
    runtime_name: str | None = None,
    threads: int | None = None,
    precision: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """A JSON-able description of the measuring environment; ``extra`` adds or overrides fields."""
    import numpy as np

    env: dict[str, Any] = {"runtime": runtime_name}
    if runtime_name:
        from edgeprune.runtimes.registry import RUNTIMES, sdk_version

        if runtime_name in RUNTIMES:
            env["runtime_version"] = sdk_version(runtime_name)
    env.update(
        {
            "precision": precision,
            "threads": threads,
            "cpu_model": cpu_model(),
            "cores": os.cpu_count(),
            "usable_cores": usable_cores(),
            "machine": platform.machine(),
            "os": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpu_governor": _read(GOVERNOR),
        }
    )
    try:
        env["load_avg_1m"] = round(os.getloadavg()[0], 2)  # a busy machine explains noisy numbers
    except (AttributeError, OSError):
        env["load_avg_1m"] = None
    for k, v in (extra or {}).items():
        if v is not None or k not in env:
            env[k] = v
    return env
