"""Which channel rounding never makes a pruned model slower than its parent, on every CPU runtime here.

    .venv/bin/python benchmarks/bench_rounding.py [--sizes 256 416] [--sparsities 0.1 0.2]
        [--round-to 1 2 4 8 16] [--threads 2] [--json out/bench_rounding.json]

For each input size, the shipped demo YOLOv7-tiny (trained weights: no denormal artefacts) is pruned
uniformly (``ep.prune``, L2) at each sparsity with each ``round_to``; all variants and the unpruned
model are exported and measured side by side, interleaved (``runtimes.compare``), on each runtime
installed (ONNX Runtime with spin-waiting off, OpenVINO CPU, OpenCV DNN), fp32, batch 1, inference
only. Printed: median ms, CoV, and the ratio to the unpruned model; a ratio above 1 beyond the
measured noise means the rounding made the model slower.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def variants(size: int, sparsities: list[float], round_tos: list[int], out: Path) -> dict[str, str]:
    """Export the unpruned demo model and each (sparsity, round_to) variant; name -> ONNX path."""
    import torch

    import edgeprune as ep

    base = ep.models.demo_model().eval()
    x = torch.zeros(1, 3, size, size)
    paths = {"unpruned": str(out / "unpruned.onnx")}
    ep.export_onnx(base, x, paths["unpruned"], verify=False)
    for s in sparsities:
        for r in round_tos:
            name = f"s{s:g}-r{r}"
            m = ep.prune(copy.deepcopy(base), x, sparsity=s, round_to=r)
            paths[name] = str(out / f"{name}.onnx")
            ep.export_onnx(m.eval(), x, paths[name], verify=False)
    return paths


def measure(paths: dict[str, str], runtime: str, threads: int, work: Path) -> dict[str, dict]:
    """All variants on one runtime, side by side; name -> {median_ms, cov, ratio, noise_ms}."""
    from edgeprune.deploy.knee import median_diff_noise
    from edgeprune.runtimes import compare, get

    rt = get(runtime)
    opts = {"allow_spinning": False} if runtime == "onnxruntime" else {}
    arts = {n: rt.compile(p, work / runtime / n, threads=threads, **opts) for n, p in paths.items()}
    sessions = {n: rt.session(a) for n, a in arts.items()}
    try:
        first = next(iter(sessions.values()))
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in first.inputs[0].shape]
        feeds = {first.inputs[0].name: np.random.default_rng(0).random(shape, dtype=np.float32)}
        res = compare(sessions, feeds, {"min_runs": 40, "min_s": 1.5, "warmup_s": 0.3})
    finally:
        for s in sessions.values():
            s.close()
    base = res["unpruned"]
    return {n: {"median_ms": s.median_ms, "cov": s.cov, "ratio": s.median_ms / base.median_ms,
                "noise_ms": median_diff_noise(s.samples_ms, base.samples_ms), "version": rt.version()}
            for n, s in res.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 416])
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.1, 0.2])
    ap.add_argument("--round-to", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    ap.add_argument("--runtimes", nargs="+", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    from edgeprune.runtimes import available

    runtimes = a.runtimes or [r for r in ("onnxruntime", "openvino", "opencv") if r in available()]
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            work = Path(tmp) / str(size)
            work.mkdir()
            paths = variants(size, a.sparsities, a.round_to, work)
            for rt in runtimes:
                results.setdefault(str(size), {})[rt] = measure(paths, rt, a.threads, work)
    print(f"demo YOLOv7-tiny, fp32, {a.threads} threads, batch 1, inference only; ratio = median / unpruned "
          "median, measured side by side (interleaved); '!' = slower than unpruned beyond the noise")
    for size, per_rt in results.items():
        names = list(next(iter(per_rt.values())))
        print(f"\ninput {size}x{size}")
        print("| variant | " + " | ".join(f"{rt} ms (ratio, CoV)" for rt in per_rt) + " |")
        print("|---|" + "---|" * len(per_rt))
        for n in names:
            cells = []
            for rt in per_rt:
                r = per_rt[rt][n]
                slower = r["median_ms"] - per_rt[rt]["unpruned"]["median_ms"] > max(r["noise_ms"], 0.0)
                flag = "!" if slower and n != "unpruned" else ""
                cells.append(f"{r['median_ms']:.2f} ({r['ratio']:.3f}{flag}, {r['cov']:.3f})")
            print(f"| {n} | " + " | ".join(cells) + " |")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
