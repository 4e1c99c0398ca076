"""Time and memory of trace + plan + apply on YOLOv7, YOLOv7-tiny (640x640) and the test patterns.

Each model runs in its own subprocess so that peak memory (ru_maxrss) is per model: "added MiB" is
the peak resident size after pruning minus the size right after building the model. "cold" is the
first call in the process (includes torch's one-time kernel registrations); "warm" is a second run on
a fresh instance of the same model.

    python benchmarks/bench_pruning.py [--threads 2] [--sparsity 0.5] [--round-to 8] [--only NAME]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATTERNS_FILE = ROOT / "tests" / "edgeprune" / "test_pruning_patterns.py"
MODELS = {"yolov7": 640, "yolov7_tiny": 640}


def _patterns():
    spec = importlib.util.spec_from_file_location("pruning_patterns", PATTERNS_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _factory(name: str):
    import torch

    import edgeprune as ep

    if name in MODELS:
        size = MODELS[name]
        return (lambda: getattr(ep.models, name)(num_classes=80).eval()), torch.rand(1, 3, size, size)
    pat = _patterns()
    model, x = pat.build(name)
    return (lambda: pat.build(name)[0]), x


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_one(name: str, threads: int, sparsity: float, round_to: int) -> dict:
    """Measure one model in this process; returns a JSON-able row."""
    import torch

    import edgeprune as ep

    torch.set_num_threads(threads)
    make, x = _factory(name)
    model = make()
    base = _maxrss_mib()
    row: dict = {"model": name, "input": list(x.shape), "params": ep.count_params(model)}
    for run in ("cold", "warm"):
        if run == "warm":
            model = make()
        t0 = time.perf_counter()
        graph = ep.trace(model, x)
        t1 = time.perf_counter()
        plan = ep.plan(graph, sparsity=sparsity, round_to=round_to)
        t2 = time.perf_counter()
        ep.apply(model, plan)
        t3 = time.perf_counter()
        row[run] = {"trace_s": t1 - t0, "plan_s": t2 - t1, "apply_s": t3 - t2, "total_s": t3 - t0}
    row["groups"] = len(graph.groups)
    row["prunable"] = len(graph.prunable_groups)
    row["pruned_params"] = ep.count_params(model)
    row["added_mib"] = _maxrss_mib() - base
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every model in a subprocess and print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--round-to", type=int, default=8)
    ap.add_argument("--only", default=None, help="one model name")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_one(args.child, args.threads, args.sparsity, args.round_to)))
        return 0
    names = [args.only] if args.only else list(MODELS) + sorted(_patterns().PATTERNS)
    print(f"{'model':20s} {'groups':>6s} {'prun.':>5s} {'trace':>7s} {'plan':>7s} {'apply':>7s} "
          f"{'total':>7s} {'warm':>7s} {'added MiB':>9s}  params -> pruned")
    for name in names:
        cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads),
               "--sparsity", str(args.sparsity), "--round-to", str(args.round_to)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if res.returncode != 0:
            print(f"{name:20s} FAILED: {res.stderr.strip().splitlines()[-1] if res.stderr else '?'}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        c, w = r["cold"], r["warm"]
        print(f"{name:20s} {r['groups']:6d} {r['prunable']:5d} {c['trace_s']:7.2f} {c['plan_s']:7.2f} "
              f"{c['apply_s']:7.2f} {c['total_s']:7.2f} {w['total_s']:7.2f} {r['added_mib']:9.0f}  "
              f"{r['params'] / 1e6:.2f}M -> {r['pruned_params'] / 1e6:.2f}M")
    print(f"(seconds; {args.threads} torch threads; sparsity {args.sparsity}, round_to {args.round_to}, "
          "criterion l2; cold = first call in a fresh process)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
