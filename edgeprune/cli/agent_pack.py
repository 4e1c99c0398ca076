"""``edgeprune agent-pack OUT.pyz``: build the torch-free on-device profiling agent (one zipapp)."""

from __future__ import annotations

import argparse

from edgeprune.cli.parsing import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "agent-pack", run,
        help="build the on-device profiling agent (a zipapp run by the device's own python3)",
        description="Build the agent a device runs without torch or pip: copy OUT.pyz to the device, "
        "then `python3 OUT.pyz run JOB_DIR` (edgeprune profile --device/--host does this over SSH).",
    )
    p.add_argument("out", help="output file, e.g. edgeprune-agent.pyz")
    p.add_argument("--python", default="/usr/bin/env python3", help="interpreter for the shebang line")


def run(args: argparse.Namespace) -> int:
    from edgeprune.devices.pack import build_agent
    from edgeprune.fileio import sha256_file

    path = build_agent(args.out, interpreter=args.python)
    print(f"{path}  {path.stat().st_size} bytes  sha256 {sha256_file(path)[:16]}")
    print(f"on the device: python3 {path.name} env   |   python3 {path.name} run JOB_DIR")
    return 0
