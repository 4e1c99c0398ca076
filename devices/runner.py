"""Profile candidates on several devices in one call: one job folder and one thread per device.

A device whose profile (or ``hosts``) gives an SSH host runs remotely through ``RemoteDevice``; one
without runs the agent in this process (the ``local`` profile). A failing device does not stop the
others: its error is returned in its ``DeviceJob`` and the results it finished stay on disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from edgeprune.devices.jobs import CandidateFiles, job_results, prepare_job
from edgeprune.devices.profile_schema import DeviceProfile, load_profile
from edgeprune.devices.remote import RemoteDevice, RetryPolicy
from edgeprune.errors import EdgepruneError

DeviceSpec = Union[str, os.PathLike, DeviceProfile]


@dataclass
class DeviceJob:
    """What one device produced: results by candidate id (``status`` ok or failed), or an error."""

    device: str
    job_dir: Path
    results: dict[str, dict] = field(default_factory=dict)
    error: Optional[Exception] = None

    def medians_ms(self) -> dict[str, float]:
        """Median latency (ms) of each successfully profiled candidate."""
        return {cid: r["latency"]["median_ms"] for cid, r in self.results.items() if r.get("status") == "ok"}


def run_local_job(job_dir: str | os.PathLike, on_event: Callable[[dict], None] | None = None,
                  device: str = "local") -> dict[str, dict]:
    """Run a job folder with the agent in this process (no SSH); results by candidate id."""
    from edgeprune.devices.agent import run_job

    def emit(event: dict) -> None:
        if on_event is not None:
            on_event({"device": device, **event})

    run_job(job_dir, emit=emit, tegrastats_s=1.0)
    return job_results(job_dir)


def profile_on_devices(
    candidates: CandidateFiles,
    devices: Sequence[DeviceSpec],
    work_dir: str | os.PathLike,
    *,
    hosts: Mapping[str, str] | None = None,
    on_event: Callable[[dict], None] | None = None,
    retry: RetryPolicy | None = None,
    profile_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    **ssh_kwargs: Any,
) -> dict[str, DeviceJob]:
    """Profile ``candidates`` (ONNX paths, or {id: path}) on every device concurrently.

    ``devices`` are profile names, paths or ``DeviceProfile``s; ``hosts`` maps a device name to
    ``user@host`` (overriding the profile). Job folders are ``work_dir/<device>/``. Returns one
    ``DeviceJob`` per device name; ``ssh_kwargs`` go to ``RemoteDevice.from_profile``.
    """
    from tqdm.auto import tqdm

    profiles = [load_profile(d) for d in devices]
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise EdgepruneError(f"a device is listed twice: {names}")
    hosts = dict(hosts or {})
    lock = threading.Lock()
    bars: dict[str, Any] = {}

    def run_one(index: int, profile: DeviceProfile) -> DeviceJob:
        job = DeviceJob(profile.name, Path(work_dir) / profile.name)
        bar = tqdm(total=0, desc=profile.name, unit="model", position=index,
                   disable=None if progress else True)
        bars[profile.name] = bar

        def handle(event: dict) -> None:
            with lock:  # tqdm and the user's callback see one event at a time
                if event.get("event") == "start":
                    bar.total = event.get("candidates", 0)
                    bar.n = event.get("candidates", 0) - event.get("pending", 0)
                    bar.refresh()
                elif event.get("event") in ("profiled", "failed"):
                    bar.update(1)
                if on_event is not None:
                    on_event(event)

        try:
            prepare_job(job.job_dir, candidates, profile, profile_options=profile_options)
            host = hosts.get(profile.name) or (profile.ssh.host if profile.ssh else None)
            if host:
                device = RemoteDevice.from_profile(profile, host=host, retry=retry, **ssh_kwargs)
                job.results = device.run_job(job.job_dir, on_event=handle)
            else:
                job.results = run_local_job(job.job_dir, on_event=handle, device=profile.name)
        except Exception as exc:  # reported per device; the other devices go on
            job.error = exc
            try:
                job.results = job_results(job.job_dir)
            except Exception:  # no manifest yet: nothing was measured
                pass
        finally:
            bar.close()
        return job

    with ThreadPoolExecutor(max_workers=max(1, len(profiles)), thread_name_prefix="edgeprune-device") as pool:
        futures = [pool.submit(run_one, i, p) for i, p in enumerate(profiles)]
        return {f.result().device: f.result() for f in futures}
