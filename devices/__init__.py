"""edgeprune.devices: target device profiles, the on-device profiling agent, remote transport.

Never imports torch: the agent runs on devices that have none. Names load on first use so the agent
starts fast and a device needs neither PyYAML nor tqdm.

    from edgeprune import devices
    devices.list_profiles()                         # ["intel-cpu", "jetson-agx-xavier", ...]
    jobs = devices.profile_on_devices(["a.onnx", "b.onnx"], ["jetson-agx-xavier"], "work",
                                      hosts={"jetson-agx-xavier": "nvidia@192.168.1.20"})
    jobs["jetson-agx-xavier"].medians_ms()          # {"a": 21.4, "b": 14.9}
"""

from __future__ import annotations

from edgeprune._lazy import lazy_getattr

_LAZY = {
    "DeviceProfile": "profile_schema",
    "SshSettings": "profile_schema",
    "load_profile": "profile_schema",
    "list_profiles": "profile_schema",
    "profile_from_dict": "profile_schema",
    "Manifest": "protocol",
    "PROTOCOL_VERSION": "protocol",
    "prepare_job": "jobs",
    "job_results": "jobs",
    "RemoteDevice": "remote",
    "RetryPolicy": "remote",
    "SshTarget": "remote",
    "DeviceJob": "runner",
    "profile_on_devices": "runner",
    "run_local_job": "runner",
    "build_agent": "pack",
}

__all__ = sorted(_LAZY)


__getattr__ = lazy_getattr("edgeprune.devices", {k: f"edgeprune.devices.{v}" for k, v in _LAZY.items()})
