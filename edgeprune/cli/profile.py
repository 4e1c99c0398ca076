"""``edgeprune profile MODEL.onnx [MODEL2.onnx ...] --runtime NAME [--runtime NAME2]``: compile, profile
(side by side when several), print a table and write JSON. The work is done by the torch-free
``edgeprune.runtimes.benchmark.profile_onnx`` so remote/device variants can reuse it.
"""

from __future__ import annotations

import argparse
import json

from edgeprune.cli.parsing import add_command
from edgeprune.errors import InvalidConfigError


def add_profile_arguments(p: argparse.ArgumentParser) -> None:
    """The options shared by local and (later) remote profiling."""
    p.add_argument(
        "--runtime",
        dest="runtimes",
        action="append",
        metavar="NAME",
        help="runtime to use; repeat to compare side by side (default: onnxruntime)",
    )
    p.add_argument(
        "--precision", default="fp32", help="fp32 (default), fp16, int8 where the runtime supports it"
    )
    p.add_argument("--threads", type=int, default=None, help="inference threads (default: the runtime's own)")
    p.add_argument("--workdir", default=None, help="where compiled artifacts go (default: a temp folder)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="write the full report here")
    p.add_argument("--min-runs", type=int, default=30, help="timed runs at least (default 30)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds at least (default 2)")
    p.add_argument("--warmup-runs", type=int, default=10)
    p.add_argument("--image", default=None, help="time on this image (letterboxed) instead of random input")
    p.add_argument(
        "--option",
        dest="rt_options",
        action="append",
        default=[],
        metavar="RUNTIME.KEY=VALUE",
        help="a compile option, e.g. opencv.engine=classic or onnxruntime.graph_optimization_level=basic",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "profile", run, help="compile and time ONNX models on one or more runtimes")
    p.add_argument("models", nargs="+", metavar="MODEL.onnx")
    add_profile_arguments(p)
    from edgeprune.devices.cli import add_device_arguments  # --device NAME [--host user@host]

    add_device_arguments(p)
    p.add_argument("--python", default=None, metavar="PATH",
                   help="with --device: the device's interpreter that runs the agent "
                        "(default: the device profile's, else python3), e.g. /usr/bin/python3.8")


def parse_options(items: list[str]) -> dict[str, dict]:
    """``["opencv.engine=classic"]`` -> ``{"opencv": {"engine": "classic"}}`` (ints/floats/bools parsed)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        runtime, dot, name = key.partition(".")
        if not sep or not dot or not runtime or not name:
            raise InvalidConfigError(f"--option must look like RUNTIME.KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(runtime, {})[name] = parsed
    return out


def run(args: argparse.Namespace) -> int:
    if getattr(args, "python", None) and not getattr(args, "devices", None):
        raise InvalidConfigError("--python names the interpreter on a remote device; add --device NAME")
    if getattr(args, "devices", None):  # on device profiles (over SSH): edgeprune.devices owns this
        from edgeprune.devices.cli import run_device_profile

        return run_device_profile(args)
    from edgeprune.fileio import write_json
    from edgeprune.runtimes.benchmark import format_table, profile_onnx
    from edgeprune.runtimes.profiling import ProfileConfig

    config = ProfileConfig(min_runs=args.min_runs, min_s=args.min_seconds, warmup_runs=args.warmup_runs)
    report = profile_onnx(
        args.models,
        args.runtimes or ["onnxruntime"],
        precision=args.precision,
        threads=args.threads,
        workdir=args.workdir,
        config=config,
        image=args.image,
        options=parse_options(args.rt_options),
    )
    print(format_table(report))
    if args.json_out:
        write_json(args.json_out, report)
        print(f"wrote {args.json_out}")
    return 0
