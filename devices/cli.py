"""The ``--device`` branch of ``edgeprune profile``: profile candidates on device profiles, over SSH
when a host is given (``--host user@host``) or in the profile, else in this process.

    edgeprune profile a.onnx b.onnx --device jetson-agx-xavier --host nvidia@192.168.1.20
    edgeprune profile a.onnx --device x86-cpu --host pc1 --device intel-cpu --host pc2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from edgeprune.errors import DeviceError


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """Options for device profiling, added to ``edgeprune profile``."""
    g = p.add_argument_group("device profiling (agent on the device, over SSH)")
    g.add_argument("--device", dest="devices", action="append", metavar="NAME",
                   help="device profile name or .yaml path; repeat for several devices (run concurrently)")
    g.add_argument("--host", dest="hosts", action="append", metavar="[NAME=]USER@HOST",
                   help="SSH destination (or ~/.ssh/config alias) of the device; NAME= picks the device "
                        "when several are given; without a host the profile's ssh.host is used")
    g.add_argument("--port", type=int, default=None, help="SSH port")
    g.add_argument("--identity", default=None, help="SSH private key file")
    g.add_argument("--ssh-option", dest="ssh_options", action="append", default=[], metavar="KEY=VALUE",
                   help="extra ssh/scp option, e.g. ProxyJump=gateway")
    g.add_argument("--retries", type=int, default=4, help="attempts on transient SSH failures (default 4)")
    g.add_argument("--jobs-dir", default="edgeprune-jobs", help="local job folders, one per device")


def _hosts(devices: list[str], items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, dest = item.partition("=")
        if sep and "@" not in name:
            out[name] = dest
        elif len(devices) == 1:
            out[devices[0]] = item
        else:
            raise DeviceError(f"--host {item!r}: with several devices write NAME=USER@HOST")
    return out


def run_device_profile(args: argparse.Namespace) -> int:
    """Run ``edgeprune profile ... --device NAME`` and print a table of medians per device."""
    from edgeprune.devices.profile_schema import load_profile
    from edgeprune.devices.remote import RetryPolicy
    from edgeprune.devices.runner import profile_on_devices
    from edgeprune.fileio import write_json

    if getattr(args, "runtimes", None):
        raise DeviceError("--runtime cannot be combined with --device: the device profile sets the runtime")
    profiles = []
    for name in args.devices:
        prof = load_profile(name)
        changes = {}
        if getattr(args, "threads", None):
            changes["threads"] = args.threads
        if getattr(args, "precision", "fp32") != "fp32":
            changes["precision"] = args.precision
        profiles.append(dataclasses.replace(prof, **changes) if changes else prof)
    hosts = _hosts([p.name for p in profiles], args.hosts or [])
    given = (("min_runs", "min_runs"), ("min_s", "min_seconds"), ("warmup_runs", "warmup_runs"))
    profile_options = {k: getattr(args, a) for k, a in given if getattr(args, a, None) is not None}

    def show(event: dict) -> None:
        kind = event.get("event")
        warned = kind == "environment" and event.get("warnings")
        if kind in ("profiled", "failed", "retry", "error") or warned:
            detail = {k: v for k, v in event.items() if k not in ("result", "event", "device", "checks")}
            print(f"[{event.get('device')}] {kind} {detail}", file=sys.stderr)

    ssh = {"port": args.port, "identity_file": args.identity, "options": args.ssh_options,
           "python": getattr(args, "python", None)}
    jobs = profile_on_devices(
        args.models, profiles, getattr(args, "workdir", None) or args.jobs_dir, hosts=hosts, on_event=show,
        retry=RetryPolicy(attempts=max(1, args.retries)), profile_options=profile_options,
        **{k: v for k, v in ssh.items() if v},
    )
    failed = 0
    print(f"{'device':<20} {'candidate':<28} {'median ms':>10} {'p90 ms':>10} {'cov':>6}  status")
    for name, job in jobs.items():
        for cid, r in job.results.items():
            lat = r.get("latency") or {}
            if r.get("status") == "ok":
                warn = "  WARN " + "; ".join(r["warnings"]) if r.get("warnings") else ""
                print(f"{name:<20} {cid:<28} {lat['median_ms']:>10.3f} {lat['p90_ms']:>10.3f} "
                      f"{lat['cov']:>6.3f}  ok{warn}")
            else:
                print(f"{name:<20} {cid:<28} {'-':>10} {'-':>10} {'-':>6}  failed: {r.get('error')}")
        if job.error is not None:
            failed += 1
            print(f"{name:<20} error: {job.error}  (results so far in {job.job_dir / 'results'})")
    if getattr(args, "json_out", None):
        write_json(args.json_out, {n: {"job_dir": str(j.job_dir), "results": j.results,
                                       "error": str(j.error) if j.error else None} for n, j in jobs.items()})
        print(f"wrote {args.json_out}")
    return 1 if failed else 0
