"""The paper's selection (parameters / FLOPs removed) vs latency-driven selection, at equal measured latency.

    .venv/bin/python benchmarks/bench_selection.py [--out bench_selection_out] [--runtime onnxruntime]
        [--iterations 3] [--finetune-steps 60] [--rates 0.25 0.5 0.75] [--threads 2]

Same model (the shipped demo YOLOv7-tiny), same data (the demo's synthetic images), same fine-tune
budget and seed, same number of groups per iteration (11): one run picks groups by the paper's scores
(6 by parameters, 5 by FLOPs removed x mAP^k), the other by predicted latency saved on the target x
mAP^k (``SelectionConfig(n_latency=11)``, counts snapped to the target's measured steps, latency model
built on the target first). Then ALL candidates of both runs are measured in one sweep on the target,
side by side, interleaved, so their latencies are comparable. Printed: every candidate (measured ms,
predicted ms, mAP), and for each latency-driven candidate the paper curve's mAP at the same measured
latency (linear interpolation between the paper's candidates; blank outside their range).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("bench_selection_out"))
    ap.add_argument("--runtime", default="onnxruntime")
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--finetune-steps", type=int, default=60)
    ap.add_argument("--rates", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--val-images", type=int, default=200, help="candidates are scored on these")
    ap.add_argument("--sensitivity-images", type=int, default=32, help="ranks single-layer prunes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="latency model cache folder")
    a = ap.parse_args(argv)

    import torch

    from edgeprune.demo import _dataset
    from edgeprune.deploy import sweep
    from edgeprune.deploy.candidate_files import candidates_from_run, metric_interval
    from edgeprune.deploy.predicted import build_models
    from edgeprune.deploy.targets import targets_from_config
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.iterative import SelectionConfig, iterative_prune
    from edgeprune.iterative.executors import default_executor
    from edgeprune.models import demo_model
    from edgeprune.models.demo import demo_model_info
    from edgeprune.runtimes.profiling import ProfileConfig
    from edgeprune.training import LabeledFinetune

    out = a.out
    model = demo_model()
    size = int(model.img_size)
    gen = tuple(demo_model_info().get("data", {}).get("gen_size", (size, size)))
    train = _dataset(out / "data" / "train", 160, 100, gen)
    val = _dataset(out / "data" / "val", a.val_images, 200, gen)
    x = torch.zeros(1, 3, size, size)
    target = {"name": a.runtime, "runtime": a.runtime, "precision": "fp32", "threads": a.threads}
    lm = build_models(targets_from_config([target]), model, x, a.cache or out / "latency_cache")[a.runtime]
    runs = {"paper": SelectionConfig(n_params=6, n_flops=5),
            "latency": SelectionConfig(n_params=0, n_flops=0, n_latency=11)}
    for name, sel in runs.items():
        torch.manual_seed(0)
        iterative_prune(
            demo_model(), x, DetectionEvaluator(val, size, batch_size=8, bootstrap=1000, cache_images=True),
            LabeledFinetune(train, size, batch_size=8, lr=5e-4, seed=0),
            run_dir=out / f"prune-{name}", iterations=a.iterations, finetune_steps=a.finetune_steps,
            selection=sel, rates=tuple(a.rates), round_to=8, executor=default_executor(a.workers), seed=0,
            latency_models=[lm] if name == "latency" else None,
            sensitivity_evaluator=DetectionEvaluator(val, size, batch_size=8, max_images=a.sensitivity_images,
                                                     cache_images=True),
        )
    cands = []
    for name in runs:  # one sweep over both runs: every latency below is measured side by side
        for c in candidates_from_run(out / f"prune-{name}", demo_model):
            if name == "latency" and c.sparsity == 0.0:
                continue  # the unpruned model is in both runs once
            c.id = f"{name}-{c.id}"
            cands.append(c)
    res = sweep(cands, [target], out / "sweep", img_size=size, bundles=False,
                profile_config=ProfileConfig(min_runs=40, min_s=1.5), latency_models={a.runtime: lm})
    tr = res.targets[a.runtime]
    rows = {c.id: (tr.stats[c.id].median_ms, tr.stats[c.id].cov, tr.predicted.get(c.id), c.metric, c.sparsity,
                   metric_interval(c)) for c in cands}
    paper = sorted([v for k, v in rows.items() if not k.startswith("latency-")], key=lambda v: v[0])
    print(f"demo YOLOv7-tiny {size}x{size}; {a.iterations} iterations x {a.finetune_steps} fine-tune "
          f"steps, rates {a.rates}, 11 groups per iteration, sensitivity on {a.sensitivity_images} and "
          f"candidates' mAP50-95 on {a.val_images} synthetic val images; latency on {a.runtime} "
          f"{tr.record.get('runtime_version')}, fp32, {a.threads} threads, all candidates of both runs "
          f"measured side by side (interleaved) in one sweep; load avg at the end {os.getloadavg()[0]:.2f}")
    print("\n| candidate | param sparsity | measured ms (CoV) | predicted ms | mAP50-95 "
          "| 95 % interval | paper mAP at this ms |")
    print("|---|---|---|---|---|---|---|")
    order = sorted(rows.items(), key=lambda kv: (kv[0].split("-")[0], -kv[1][0]))
    for cid, (ms, cov, pred, metric, sp, ci) in order:
        at = ""
        if cid.startswith("latency-") and paper[0][0] <= ms <= paper[-1][0]:
            at = f"{np.interp(ms, [p[0] for p in paper], [p[3] for p in paper]):.4f}"
        pred_s = "-" if pred is None else f"{pred:.2f}"
        ci_s = "-" if ci is None else f"[{ci[0]:.3f}, {ci[1]:.3f}]"
        print(f"| {cid} | {sp:.1%} | {ms:.2f} ({cov:.3f}) | {pred_s} | {metric:.4f} | {ci_s} | {at} |")
    if tr.prediction:
        p = tr.prediction
        print(f"\nlatency model on these candidates: median error {p['median_rel_error']:.1%}, "
              f"Spearman {p['spearman']}")
    (out / "bench_selection.json").write_text(json.dumps({k: list(v) for k, v in rows.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
