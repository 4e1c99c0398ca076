"""``edgeprune demo``: prune the shipped demo detector, profile it per runtime, pick and bundle."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeprune.cli.parsing import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "demo", run,
        help="the whole pipeline on the shipped demo model (resumes; --fresh starts clean)",
        description="Prune the shipped YOLOv7-tiny demo detector iteratively with fine-tuning, profile "
        "every candidate on each installed runtime side by side, pick the latency knee per target, "
        "write a report and one bundle per target. Reruns resume where they stopped.",
    )
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default demo_out, or demo_full_out with --full)")
    p.add_argument("--full", action="store_true",
                   help="the longer preset: 1000 training images, 4 iterations of 300 fine-tune steps, "
                   "recovery of each pick up to 1200 steps (measured: 19 min on 2 cores)")
    p.add_argument("--fresh", action="store_true", help="delete the output folder first and start clean")
    p.add_argument("--runtime", action="append", dest="runtimes", metavar="NAME",
                   help="runtime to sweep (repeatable; default: onnxruntime, openvino, opencv if installed)")
    p.add_argument("--iterations", type=int, default=None, help="pruning iterations (default 3; --full 4)")
    p.add_argument("--finetune-steps", type=int, default=None,
                   help="fine-tuning steps per iteration (default 90; --full 300)")
    p.add_argument("--threads", type=int, default=2, help="inference threads when profiling (default 2)")
    p.add_argument("--workers", type=int, default=None, help="sensitivity worker processes (default: cores)")
    p.add_argument("--latency", action="store_true",
                   help="measure a latency model per runtime, select groups by predicted latency saved and "
                   "prune until the predicted knee (run folder prune-latency/, report sweep-latency/)")
    p.add_argument("--per-target", action="store_true",
                   help="with --latency: one pruning run per runtime, each with only its own latency model, "
                   "so each runtime's knee and bundle come from its own candidates (run folder "
                   "prune-per-target/<runtime>/, report sweep-per-target/); costs N runtimes x the pruning "
                   "time (only the unpruned model's sensitivity analysis is shared)")
    p.add_argument("--refine", action="store_true",
                   help="measure interpolated plans between the two candidates around each knee")


def run(args: argparse.Namespace) -> int:
    from edgeprune.demo import DemoConfig, run_demo

    given = {"out_dir": args.out, "iterations": args.iterations, "finetune_steps": args.finetune_steps}
    kwargs = {k: v for k, v in given.items() if v is not None}
    kwargs.update(threads=args.threads, workers=args.workers,
                  runtimes=tuple(args.runtimes) if args.runtimes else None,
                  latency=args.latency, refine=args.refine, per_target=args.per_target)
    cfg = DemoConfig.full(**kwargs) if args.full else DemoConfig(**kwargs)
    result = run_demo(cfg, fresh=args.fresh)
    print()
    for key, path in _flat(result.get("report") or {}):
        print(f"report {key}: {path}")
    for target, bundle in result["bundles"].items():
        print(f"bundle for {target}: {bundle}")
    first = next((b for b in result["bundles"].values() if b), None)
    if first:
        print(f"\nrun it in an OpenCV app:\n  .venv/bin/python examples/opencv_app.py --bundle {first}")
    return 0


def _flat(paths: dict, prefix: str = "") -> list[tuple[str, str]]:
    """``{"plots": {"ort": {"latency": p}}}`` -> ``[("plots ort latency", p)]``: one path per line."""
    out = []
    for key, value in paths.items():
        name = f"{prefix} {key}".strip()
        out += _flat(value, name) if isinstance(value, dict) else [(name, str(value))]
    return out
