"""Sensitivity analysis on a local 2-worker Ray cluster vs the local process pool vs one process.

Starts a Ray head and one worker node on 127.0.0.1 (one CPU each, ``ray start``), then times the
same sensitivity pass (the demo model, ``--groups`` groups x 3 rates, a fidelity evaluator on
``--images`` random images at ``--size`` px, no cache) with each executor, interleaved
(serial, pool, ray, serial, pool, ray, ...), and prints medians and CoV. The first Ray pass includes
starting its worker processes; the process pool starts its workers in every pass (it is created per
pass), so "warm" Ray passes are reported separately. The cluster is always stopped at the end.

    .venv/bin/python benchmarks/bench_ray_sensitivity.py [--groups 12] [--size 160] [--images 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch


class FidelityBench:
    """Fidelity to the unpruned model on fixed random images: ``1 / (1 + relative MSE)``."""

    primary = "fidelity"

    def __init__(self, teacher: torch.nn.Module, size: int, n: int) -> None:
        self.inputs = torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            self.target = self._out(teacher.eval())

    def _out(self, model: torch.nn.Module) -> torch.Tensor:
        out = model(self.inputs)
        return out[0] if isinstance(out, (tuple, list)) else out

    def __call__(self, model: torch.nn.Module) -> dict:
        with torch.no_grad():
            out = self._out(model.eval())
        rel = float(((out - self.target) ** 2).mean() / self.target.var())
        return {"fidelity": 1.0 / (1.0 + rel)}

    def settings(self) -> dict:
        return {"kind": "bench-fidelity", "n": len(self.inputs)}


def local_cluster():
    """``tests/edgeprune/ray_cluster.py``'s LocalRayCluster: 2 nodes x 1 CPU, stopped by pid, not by name."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "edgeprune" / "ray_cluster.py"
    spec = importlib.util.spec_from_file_location("ray_cluster", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.LocalRayCluster(workers=1)


def cov(xs: list[float]) -> float:
    return statistics.pstdev(xs) / statistics.mean(xs) if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--groups", type=int, default=12, help="prunable groups analysed (x 3 rates)")
    ap.add_argument("--size", type=int, default=160, help="input size in px (multiple of 32)")
    ap.add_argument("--images", type=int, default=8, help="images per evaluation")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    args = ap.parse_args()

    import edgeprune as ep
    from edgeprune.iterative import LocalProcessExecutor, RayExecutor, SerialExecutor, sensitivity
    from edgeprune.pruning import trace

    torch.set_num_threads(1)  # every executor evaluates on one thread per worker
    model = ep.models.demo_model()
    x = torch.zeros(1, 3, args.size, args.size)
    groups = [g.id for g in trace(model, x).groups if g.prunable][: args.groups]
    ev = FidelityBench(model, args.size, args.images)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    cluster = local_cluster().start()
    address = cluster.address
    try:
        executors = {"serial (1 process)": SerialExecutor(),
                     "process pool (2 workers)": LocalProcessExecutor(2),
                     "Ray, 2 nodes x 1 CPU": RayExecutor(address=address)}
        times: dict[str, list[float]] = {k: [] for k in executors}
        tables = {}
        for r in range(args.repeats):
            for name, ex in executors.items():
                t0 = time.perf_counter()
                tables[name] = sensitivity(model, x, ev, groups=groups, executor=ex, progress=False)
                times[name].append(time.perf_counter() - t0)
                print(f"round {r + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    finally:
        cluster.stop()
    ref = {(row.group, row.rate): row.metric for row in tables["serial (1 process)"].rows}
    for name, t in tables.items():
        worst = max(abs(row.metric - ref[(row.group, row.rate)]) for row in t.rows)
        print(f"{name}: {len(t.rows)} evaluations, max |metric - serial| = {worst:.2e}", file=sys.stderr)
    n = len(groups) * 3
    base = statistics.median(times["serial (1 process)"])
    print(f"\nsensitivity of the demo model: {len(groups)} groups x 3 rates = {n} evaluations, "
          f"{args.images} images at {args.size} px, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.repeats} rounds, load average before: {load}")
    print(f"{'executor':<26} {'median s':>9} {'CoV':>6} {'speed-up':>9} {'warm median s':>14}")
    for name, t in times.items():
        warm = statistics.median(t[1:]) if len(t) > 1 else float("nan")
        print(f"{name:<26} {statistics.median(t):>9.2f} {cov(t):>6.2f} {base / statistics.median(t):>8.2f}x "
              f"{warm:>14.2f}")


if __name__ == "__main__":
    main()
