"""Remote targets measured concurrently: one thread per device, that device's targets one after another.

A latency measurement must have its device to itself (two at once would time each other), but
separate devices are separate machines: a sweep over N devices should take as long as the slowest
device, not the sum of all. Threads suffice because the host only waits on SSH while devices work.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, Callable

from edgeprune.deploy.targets import Target

_THIS_MACHINE = {"", "localhost", "127.0.0.1", "::1"}


def device_key(target: Target) -> str | None:
    """The host a remote target measures on (given, else its profile's); None when that is this machine."""
    host = target.host
    if host is None:
        try:
            from edgeprune.devices.profile_schema import load_profile

            ssh = load_profile(target.device).ssh
            host = ssh.host if ssh is not None else None
        except Exception:  # an unreadable profile fails later, in its own measurement, with its own error
            return f"profile:{target.device}"
    host = (host or "").rpartition("@")[2]  # user@host: another user is not another device
    return None if host in _THIS_MACHINE else host


def measure_devices_concurrently(targets: Sequence[Target],
                                 measure: Callable[[Target], Any]) -> dict[str, Future]:
    """Start ``measure(target)`` for remote targets: devices in parallel, each device's targets in turn.

    Returns ``{target name: Future}``; ``future.result()`` waits and returns the record or re-raises
    the target's error. Targets measured on this machine (local runtimes, a device profile without a
    host or at localhost) are left out: the caller measures them one at a time, as before.
    """
    by_device: dict[str, list[Target]] = {}
    for t in targets:
        key = device_key(t) if t.remote else None
        if key is not None:
            by_device.setdefault(key, []).append(t)
    futures = {t.name: Future() for group in by_device.values() for t in group}

    def run(group: list[Target]) -> None:
        for t in group:  # one measurement at a time on this device
            fut = futures[t.name]
            fut.set_running_or_notify_cancel()
            try:
                fut.set_result(measure(t))
            except BaseException as exc:  # delivered to the caller through result()
                fut.set_exception(exc)

    for key, group in by_device.items():
        threading.Thread(target=run, args=(group,), name=f"device-{key}", daemon=True).start()
    return futures
