"""``edgeprune field-check``: verify a device's TensorRT stack with one command and one JSON report.

    edgeprune field-check --host nvidia@192.168.1.20 --out jetson-report.json   # over SSH
    edgeprune field-check --device jetson-agx-orin --out report.json            # host from the profile
    edgeprune field-check --out report.json                                     # this machine

Runs the agent's ``field-check`` on the device (CUDA path, JetPack facts, fp32/fp16/int8-calibrated/
DLA/trtexec engines against an exact reference, a session used from another thread) and copies the
report here. Exit code: 0 all applicable checks passed, 1 a check failed, 3 incomplete.
"""

from __future__ import annotations

import argparse
import sys

from edgeprune.cli.parsing import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "field-check", run,
        help="verify a device's TensorRT paths (run over SSH or here); writes one JSON report",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("--host", default=None, help="SSH destination USER@HOST (or ~/.ssh/config alias)")
    p.add_argument("--device", default=None, help="device profile name/path (its ssh section is used)")
    p.add_argument("--out", default="field-check.json", help="report file here (default field-check.json)")
    p.add_argument("--port", type=int, default=None, help="SSH port")
    p.add_argument("--identity", default=None, help="SSH private key file")
    p.add_argument("--python", default=None, help="the device's python (default: profile's or python3)")
    p.add_argument("--ssh-option", dest="ssh_options", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-trtexec", action="store_true", help="skip the trtexec check")


def run(args: argparse.Namespace) -> int:
    from edgeprune.devices.field_check import run_field_check, summary_lines
    from edgeprune.fileio import read_json

    def show(event: dict) -> None:
        if event.get("event") == "check":
            detail = event.get("reason") or event.get("error") or ""
            print(f"[{event.get('device', 'here')}] {event['name']}: {event['status']} {detail}".rstrip(),
                  file=sys.stderr)

    if not args.host and not args.device:
        code = run_field_check(args.out, trtexec=not args.no_trtexec, emit=lambda event: None)
        report = read_json(args.out)
    else:
        from edgeprune.devices.profile_schema import load_profile
        from edgeprune.devices.remote import RemoteDevice, SshTarget

        kw = {k: v for k, v in (("port", args.port), ("identity_file", args.identity),
                                ("options", args.ssh_options)) if v}
        if args.python:
            kw["python"] = args.python
        if args.device:
            device = RemoteDevice.from_profile(load_profile(args.device), host=args.host, **kw)
        else:
            opts = kw.pop("options", ())
            target = SshTarget(args.host, port=kw.pop("port", None),
                               identity_file=kw.pop("identity_file", None), options=list(opts))
            device = RemoteDevice(target, **kw)
        code, report = device.field_check(args.out, on_event=show, trtexec=not args.no_trtexec)
    for line in summary_lines(report):
        print(line)
    print(f"report: {args.out}")
    return code
