"""Where a latency model's measurements come from: a local runtime (side by side, interleaved), or the
device agent over SSH (one file after another). Anything with ``key()`` and ``measure()`` works, which
is how tests use a fake runtime whose latency is a known function of the channel counts.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgeprune.runtimes.profiling import ProfileConfig

# Short timings: a single conv runs in microseconds to a few ms; ratios inside one interleaved pass are
# what the model uses, absolute levels are calibrated on the whole model.
MICRO_PROFILE = ProfileConfig(warmup_runs=5, warmup_s=0.05, min_runs=25, min_s=0.15, max_repeats=2,
                              cov_threshold=0.15)
WHOLE_PROFILE = ProfileConfig(warmup_runs=10, warmup_s=0.3, min_runs=40, min_s=1.5, max_repeats=2)
MAX_RESIDENT = 10  # sessions open at once: many resident sessions shift each other's medians


class Profiler(Protocol):
    """Measures ONNX files on one target."""

    def key(self) -> dict:
        """What the measurements depend on: runtime, its version, precision, threads, options, device."""

    def measure(self, files: dict[str, Path], whole: bool = False) -> dict[str, float]:
        """Median ms per name; files given together are measured side by side where the target can."""


def _feeds(session) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {s.name: rng.random([d if isinstance(d, int) and d > 0 else 1 for d in s.shape],
                               dtype=np.float32) for s in session.inputs}


class LocalProfiler:
    """A local runtime, e.g. ``LocalProfiler(Target("ort", "onnxruntime", threads=2))``."""

    def __init__(self, target: Any, micro: ProfileConfig = MICRO_PROFILE,
                 whole: ProfileConfig = WHOLE_PROFILE) -> None:
        from edgeprune.runtimes import registry

        self.target = target
        self.runtime = registry.get(target.runtime)
        self.micro, self.whole = micro, whole

    def key(self) -> dict:
        t = self.target
        return {"runtime": t.runtime, "runtime_version": self.runtime.version(), "precision": t.precision,
                "threads": t.threads, "options": dict(sorted(t.options.items())), "device": None,
                "micro": asdict(self.micro), "whole": asdict(self.whole)}

    def measure(self, files: dict[str, Path], whole: bool = False) -> dict[str, float]:
        from edgeprune.runtimes.compare import compare

        t = self.target
        out: dict[str, float] = {}
        names = list(files)
        with tempfile.TemporaryDirectory(prefix="edgeprune-lat-") as tmp:
            for start in range(0, len(names), MAX_RESIDENT):
                chunk = names[start:start + MAX_RESIDENT]
                sessions = {}
                try:
                    for n in chunk:
                        art = self.runtime.compile(files[n], Path(tmp) / f"{start}-{len(sessions)}",
                                                   precision=t.precision, threads=t.threads, **t.options)
                        sessions[n] = self.runtime.session(art)
                    feeds = {n: _feeds(s) for n, s in sessions.items()}
                    res = compare(sessions, feeds, self.whole if whole else self.micro)
                    out.update({n: float(s.median_ms) for n, s in res.items()})
                finally:
                    for s in sessions.values():
                        s.close()
        return out


class RemoteProfiler:
    """A device profile reached over SSH: the agent measures each file (one after another)."""

    def __init__(self, target: Any, work_dir: str | Path, micro: ProfileConfig = MICRO_PROFILE,
                 whole: ProfileConfig = WHOLE_PROFILE) -> None:
        self.target, self.work_dir, self.micro, self.whole = target, Path(work_dir), micro, whole
        self._version: str | None = None

    def key(self) -> dict:
        t = self.target
        return {"runtime": t.runtime, "runtime_version": self._version, "precision": t.precision,
                "threads": t.threads, "options": dict(sorted(t.options.items())), "device": t.device,
                "host": t.host, "micro": asdict(self.micro), "whole": asdict(self.whole)}

    def measure(self, files: dict[str, Path], whole: bool = False) -> dict[str, float]:
        from edgeprune.devices.profile_schema import load_profile
        from edgeprune.devices.runner import profile_on_devices
        from edgeprune.errors import DeviceError

        prof = load_profile(self.target.device)
        jobs = profile_on_devices({n: str(p) for n, p in files.items()}, [prof], self.work_dir,
                                  hosts={prof.name: self.target.host} if self.target.host else None,
                                  profile_options=asdict(self.whole if whole else self.micro))
        job = jobs[prof.name]
        bad = {n: r.get("error") for n, r in job.results.items() if r.get("status") != "ok"}
        if job.error is not None or bad or set(job.results) != set(files):
            raise DeviceError(f"latency model on device '{prof.name}': "
                              f"{job.error or bad or 'results missing'}")
        first = next(iter(job.results.values()))
        self._version = first.get("runtime_version")
        return {n: float(r["latency"]["median_ms"]) for n, r in job.results.items()}


def profiler_for(target: Any, work_dir: str | Path | None = None) -> Profiler:
    """The profiler of a sweep ``Target``: local runtime, or the device agent when it names a device."""
    if target.remote:
        return RemoteProfiler(target, work_dir or Path(tempfile.mkdtemp(prefix="edgeprune-lat-")))
    return LocalProfiler(target)
