"""Compile time, profiling time and latency of YOLOv7-tiny (640x640) on every CPU runtime installed,
measured side by side (interleaved) with ``edgeprune.runtimes.compare`` at a fixed thread count.

    .venv/bin/python benchmarks/bench_runtimes.py [--threads 2] [--size 640] [--json out/bench_runtimes.json]

The model gets BN statistics from a few train-mode passes on random images before export: freshly
initialised BN layers (mean 0, var 1) let activations grow layer after layer, and such values (or
denormals, when they shrink) give CPU timings no trained model would show.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build_onnx(path: Path, size: int, calib_batches: int = 4, seed: int = 0) -> dict:
    """YOLOv7-tiny with BN-calibrated random weights, exported to ``path``; returns facts about it."""
    import torch

    import edgeprune as ep

    torch.manual_seed(seed)
    model = ep.models.yolov7_tiny(num_classes=80)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    model.train()
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(calib_batches):
            model(torch.rand(2, 3, size, size))
    calib_s = time.perf_counter() - t0
    model.eval()
    x = torch.rand(1, 3, size, size)
    t0 = time.perf_counter()
    res = ep.export_onnx(model, x, path)
    return {"params": sum(p.numel() for p in model.parameters()), "calib_s": calib_s,
            "export_s": time.perf_counter() - t0, "max_abs_diff": res.max_abs_diff}


def outputs_agree(report: dict, seed: int = 0) -> dict[str, float]:
    """Max abs difference of each runtime's output to the first one's on one random input."""
    from edgeprune.runtimes import get
    from edgeprune.runtimes.base import Artifact
    from edgeprune.runtimes.onnx_info import random_feeds

    outs = {}
    for r in report["results"]:
        art = Artifact.from_dict(r["artifact"])
        with get(r["runtime"]).session(art) as s:
            outs[r["name"]] = s.infer(random_feeds(s.inputs, seed=seed))[0]
    first = next(iter(outs.values()))
    return {k: float(np.abs(v - first).max()) for k, v in outs.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--min-runs", type=int, default=40)
    ap.add_argument("--min-seconds", type=float, default=4.0)
    ap.add_argument("--runtimes", nargs="+", default=None, help="default: every installed CPU runtime")
    ap.add_argument("--json", default="out/bench_runtimes.json")
    args = ap.parse_args(argv)

    from edgeprune.fileio import write_json
    from edgeprune.runtimes import available
    from edgeprune.runtimes.benchmark import format_table, profile_onnx
    from edgeprune.runtimes.environment import collect
    from edgeprune.runtimes.profiling import ProfileConfig

    runtimes = args.runtimes or [r for r in ("onnxruntime", "openvino", "opencv") if r in available()]
    with tempfile.TemporaryDirectory(prefix="edgeprune-bench-") as tmp:
        onnx_path = Path(tmp) / "yolov7_tiny.onnx"
        facts = build_onnx(onnx_path, args.size)
        print(f"yolov7_tiny {args.size}x{args.size}: {facts['params'] / 1e6:.2f}M params, BN calibrated in "
              f"{facts['calib_s']:.1f} s, exported in {facts['export_s']:.1f} s "
              f"(ONNX vs torch max abs diff {facts['max_abs_diff']:.2g})")
        config = ProfileConfig(min_runs=args.min_runs, min_s=args.min_seconds, warmup_runs=5, warmup_s=1.0)
        t0 = time.perf_counter()
        report = profile_onnx([onnx_path], runtimes, threads=args.threads, workdir=Path(tmp) / "work",
                              config=config)
        total_s = time.perf_counter() - t0
        agree = outputs_agree(report)
    print()
    print(format_table(report))
    print()
    print(f"{'runtime':<12} {'compile s':>9} {'timed s':>8} {'median ms':>10} {'95% CI of median':>20} "
          f"{'max |diff| vs first':>20}")
    from edgeprune.runtimes.profiling import LatencyStats

    for r in report["results"]:
        st = LatencyStats.from_dict(r["stats"])
        lo, hi = st.median_ci()
        timed_s = sum(st.samples_ms) / 1e3
        print(f"{r['runtime']:<12} {r['compile_s']:>9.2f} {timed_s:>8.2f} {st.median_ms:>10.2f} "
              f"{f'[{lo:.2f}, {hi:.2f}]':>20} {agree[r['name']]:>20.2e}")
    print(f"\ninterleaved profiling of all runtimes took {report['profile_s']:.1f} s "
          f"(compile + profile {total_s:.1f} s); threads {args.threads}; env: {collect()['cpu_model']}, "
          f"load avg {collect()['load_avg_1m']}")
    report["model"] = {"name": "yolov7_tiny", "size": args.size, **facts}
    report["max_abs_diff_vs_first"] = agree
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
