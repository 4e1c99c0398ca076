"""Cost of verifying a prune (dataflow fingerprint + zeroed-channel output check) on YOLOv7 at 640.

Times ``ep.prune(model, x, sparsity, verify=True)`` against ``verify=False`` on fresh instances,
interleaved (A B A B ...) so machine load hits both alike; prints medians and the coefficient of
variation. Also times one plain eval forward for scale.

    python benchmarks/bench_verify.py [--model yolov7] [--size 640] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import edgeprune as ep


def _cov(xs: list[float]) -> float:
    return statistics.pstdev(xs) / statistics.mean(xs) if len(xs) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov7")
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sparsity", type=float, default=0.5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = torch.rand(1, 3, args.size, args.size)
    build = getattr(ep.models, args.model)
    times: dict[str, list[float]] = {"verify=False": [], "verify=True": [], "one forward": []}
    for _ in range(args.rounds):
        for verify in (False, True):
            torch.manual_seed(0)
            model = build(num_classes=80).eval()
            t0 = time.perf_counter()
            ep.prune(model, x, sparsity=args.sparsity, round_to=8, verify=verify)
            times[f"verify={verify}"].append(time.perf_counter() - t0)
        model = build(num_classes=80).eval()
        with torch.no_grad():
            t0 = time.perf_counter()
            model(x)
            times["one forward"].append(time.perf_counter() - t0)
    print(f"{args.model} {args.size}x{args.size}, sparsity {args.sparsity}, {args.threads} threads, "
          f"{args.rounds} interleaved rounds")
    print(f"{'':14s} {'median s':>9s} {'CoV':>6s}  runs")
    for name, xs in times.items():
        print(f"{name:14s} {statistics.median(xs):9.2f} {_cov(xs):6.1%}  {', '.join(f'{v:.2f}' for v in xs)}")
    extra = statistics.median(times["verify=True"]) - statistics.median(times["verify=False"])
    print(f"verification adds {extra:.2f} s (median difference) = "
          f"{extra / statistics.median(times['one forward']):.1f} unpruned forwards")


if __name__ == "__main__":
    main()
