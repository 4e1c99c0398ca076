"""Profile ONNX candidates on your own Jetson or PC over SSH, with the device's own runtime.

The device needs python3 with numpy and its runtime SDK (TensorRT on a Jetson: part of JetPack;
OpenVINO or ONNX Runtime on a PC) -- no torch, no edgeprune install. Your ssh setup is used as is
(~/.ssh/config, keys, ProxyJump); the key must work without a password prompt (BatchMode).

    python examples/profile_remote_device.py --host nvidia@192.168.1.20 --device jetson-agx-xavier \
        yolov7_s0.onnx yolov7_s50.onnx
    python examples/profile_remote_device.py --host factory-pc --device intel-cpu *.onnx --threads 4

Run it again after an interruption: finished candidates are not measured twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from edgeprune import devices
from edgeprune.errors import EdgepruneError


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="ONNX candidate files")
    ap.add_argument("--host", required=True, help="user@host or an ~/.ssh/config alias")
    ap.add_argument("--device", default="jetson-agx-xavier",
                    help=f"profile name or .yaml path; known: {', '.join(devices.list_profiles())}")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--identity", default=None, help="SSH private key")
    ap.add_argument("--python", default=None, help="python on the device (default: the profile's, python3)")
    ap.add_argument("--remote-dir", default=None, help="folder on the device (default: ~/.edgeprune)")
    ap.add_argument("--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                    help="extra ssh option, e.g. ProxyJump=gateway (repeatable)")
    ap.add_argument("--threads", type=int, default=None, help="override the profile's threads")
    ap.add_argument("--work", default="edgeprune-jobs", help="local job folders (results land here)")
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per candidate (at least)")
    args = ap.parse_args()

    profile = devices.load_profile(args.device)
    if args.threads:
        profile = dataclasses.replace(profile, threads=args.threads)
    print(f"{profile.name}: {profile.description} | runtime {profile.runtime} {profile.precision} "
          f"| round channels to multiples of {profile.channel_multiple}")

    def on_event(event: dict) -> None:
        kind = event["event"]
        if kind == "environment":
            for warning in event.get("warnings", []):
                print(f"  WARNING {warning}")
        elif kind == "profiled":
            print(f"  {event['candidate']:<30} median {event['median_ms']:.2f} ms")
        elif kind in ("failed", "retry"):
            print(f"  {kind}: {event.get('candidate', '')} {event.get('error', '')}")

    ssh = {"port": args.port, "identity_file": args.identity, "python": args.python,
           "remote_dir": args.remote_dir, "options": args.ssh_option}
    ssh = {k: v for k, v in ssh.items() if v}
    try:
        jobs = devices.profile_on_devices(
            args.models, [profile], args.work, hosts={profile.name: args.host}, on_event=on_event,
            profile_options={"min_s": args.seconds}, **ssh,
        )
    except EdgepruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    job = jobs[profile.name]
    if job.error is not None:
        print(f"error: {job.error}", file=sys.stderr)
    for cid, r in job.results.items():
        if r["status"] == "ok":
            lat = r["latency"]
            flag = "  UNSTABLE" if lat.get("unstable") else ""
            print(f"{cid:<30} median {lat['median_ms']:8.3f} ms  p90 {lat['p90_ms']:8.3f}  "
                  f"cov {lat['cov']:.3f}{flag}")
        else:
            print(f"{cid:<30} failed: {r['error']}")
    print(f"results: {job.job_dir / 'results'}")
    return 1 if job.error else 0


if __name__ == "__main__":
    sys.exit(main())
