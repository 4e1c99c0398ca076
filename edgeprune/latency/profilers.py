"""Where a latency model's measurements come from: a local runtime (side by side, interleaved), or the
device agent over SSH (one file after another). Anything with ``key()`` and ``measure()`` works, which
is how tests use a fake runtime whose latency is a known function of the channel counts.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

from edgeprune.runtimes.onnx_info import filled_feeds
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
        """What the measurements depend on: runtime, its version, precision, threads, options, device.

        Complete before any ``measure()``: it names the cache file the measurements go to."""

    def measure(self, files: dict[str, Path], whole: bool = False) -> dict[str, float]:
        """Median ms per name; files given together are measured side by side where the target can."""


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
                    feeds = {n: filled_feeds(s.inputs) for n, s in sessions.items()}
                    res = compare(sessions, feeds, self.whole if whole else self.micro)
                    out.update({n: float(s.median_ms) for n, s in res.items()})
                finally:
                    for s in sessions.values():
                        s.close()
        return out


# The parts of the device's environment that change its latency for good (a cache key part); what
# changes from boot to boot (clocks, governor, load) is checked and warned about on every measurement.
def device_fingerprint(env: dict) -> dict:
    """CPU, machine, Jetson release and power mode from an ``agent env`` environment record."""
    jetson = env.get("jetson") or {}
    release = jetson.get("release") or {}
    return {"cpu_model": env.get("cpu_model"), "machine": env.get("machine"), "l4t": release.get("l4t"),
            "jetpack": release.get("jetpack"), "power_mode": (jetson.get("nvpmodel") or {}).get("mode_name")}


class RemoteProfiler:
    """A device profile reached over SSH: the agent measures each file (one after another).

    ``key()`` asks the agent for the device's runtime version and environment first, so the cache key
    is complete before anything is measured; every job then carries that version, and the agent refuses
    it on any other (its results from before an upgrade are not current either). The key records the
    settings the agent measures with: the device profile with the target's runtime, precision, threads
    and options (``Target.device_profile``).
    """

    def __init__(self, target: Any, work_dir: str | Path, micro: ProfileConfig = MICRO_PROFILE,
                 whole: ProfileConfig = WHOLE_PROFILE) -> None:
        self.target, self.work_dir, self.micro, self.whole = target, Path(work_dir), micro, whole
        self.profile = target.device_profile()
        self.host = target.host or (self.profile.ssh.host if self.profile.ssh else None)
        self.env: dict | None = None  # the agent's last ``env`` report

    def environment(self) -> dict:
        """Ask the agent (over SSH, or in this process for a profile without a host) what it runs on."""
        if self.host:
            from edgeprune.devices.remote import RemoteDevice

            device = RemoteDevice.from_profile(self.profile, host=self.host)
            self.env = device.environment(self.profile.runtime)
        else:
            from edgeprune.devices.agent import environment_report

            self.env = environment_report(self.profile.runtime, tegrastats_s=0.0)
        return self.env

    def key(self) -> dict:
        p, env = self.profile, self.environment()  # asked anew: the device may have changed since
        return {"runtime": p.runtime, "runtime_version": env["runtime_version"], "precision": p.precision,
                "threads": p.threads, "options": dict(sorted(p.runtime_options.items())),
                "device": self.target.device, "host": self.host,
                "device_env": device_fingerprint(env.get("environment") or {}),
                "micro": asdict(self.micro), "whole": asdict(self.whole)}

    def measure(self, files: dict[str, Path], whole: bool = False) -> dict[str, float]:
        from edgeprune.devices.jobs import prepare_job
        from edgeprune.devices.remote import RemoteDevice
        from edgeprune.devices.runner import run_local_job
        from edgeprune.errors import DeviceError, EdgepruneError

        prof = self.profile
        version = (self.env or self.environment())["runtime_version"]
        job_dir = self.work_dir / prof.name
        try:
            prepare_job(job_dir, {n: str(p) for n, p in files.items()}, prof,
                        profile_options=asdict(self.whole if whole else self.micro), runtime_version=version)
            if self.host:
                results = RemoteDevice.from_profile(prof, host=self.host).run_job(job_dir)
            else:
                results = run_local_job(job_dir, device=prof.name)
        except (EdgepruneError, OSError) as exc:
            raise DeviceError(f"latency model on device '{prof.name}': {exc}") from exc
        bad = {n: r.get("error") for n, r in results.items() if r.get("status") != "ok"}
        if bad or set(results) != set(files):
            raise DeviceError(f"latency model on device '{prof.name}': {bad or 'results missing'}")
        return {n: float(r["latency"]["median_ms"]) for n, r in results.items()}


def profiler_for(target: Any, work_dir: str | Path | None = None) -> Profiler:
    """The profiler of a sweep ``Target``: local runtime, or the device agent when it names a device."""
    if target.remote:
        return RemoteProfiler(target, work_dir or Path(tempfile.mkdtemp(prefix="edgeprune-lat-")))
    return LocalProfiler(target)
