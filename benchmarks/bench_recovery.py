"""Which fine-tuning objective recovers most mAP per step after pruning the demo detector?

The shipped demo model is pruned uniformly (``--sparsity``, L2, channels rounded to 8), then each
variant fine-tunes a copy for ``--steps`` steps from the same pruned weights, with each ``--seeds``:

    labels          YOLOv7 loss on the labeled training images
    distill         match the unpruned teacher's outputs only (no labels)
    labels+distill  both (the teacher's term weighted ``--distill``)
    ... -noBN       the same without re-estimating BatchNorm statistics after fine-tuning

Each result is scored on the validation images (mAP50-95 with a 95 % bootstrap interval over
images) and compared with ``labels`` on the same bootstrap resamples (paired difference). CPU time
is reported beside wall time because the machine may be shared.

    python benchmarks/bench_recovery.py [--steps 90] [--seeds 0 1] [--val-images 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

VARIANTS = ("labels", "distill", "labels+distill", "labels+distill-noBN", "labels-noBN")


def _data(root: Path, n_train: int, n_val: int) -> tuple[Path, Path]:
    from edgeprune.data import synthetic
    from edgeprune.models.demo import demo_model_info

    gen = tuple(demo_model_info().get("data", {}).get("gen_size", (320, 320)))
    out = []
    for name, n, seed in (("train", n_train, 100), ("val", n_val, 200)):  # the demo's seeds
        d = root / name
        if not (d / "data.yaml").exists():
            synthetic.generate(d, n, seed=seed, img_size=gen, progress=False)
        out.append(d)
    return out[0], out[1]


def _finetune(variant: str, teacher, train: Path, size: int, args, seed: int):
    from edgeprune.training import DistillFinetune, LabeledFinetune

    common = {"batch_size": args.batch_size, "lr": args.lr, "seed": seed, "progress": False,
              "bn_recalibrate": 0 if variant.endswith("-noBN") else 16}
    base = variant.removesuffix("-noBN")
    if base == "labels":
        return LabeledFinetune(train, size, **common)
    if base == "distill":
        return DistillFinetune(teacher, train / "images", size, **common)
    return LabeledFinetune(train, size, teacher=teacher, distill=args.distill, **common)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sparsity", type=float, default=0.4)
    ap.add_argument("--train-images", type=int, default=160)
    ap.add_argument("--val-images", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--distill", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS))
    ap.add_argument("--data", type=Path,
                    default=Path(tempfile.gettempdir()) / "edgeprune_bench" / "recovery_data")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = ap.parse_args()

    import torch

    import edgeprune as ep
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.evaluation.bootstrap import paired_difference
    from edgeprune.models import demo_model

    torch.set_num_threads(args.threads)
    train, val = _data(args.data, args.train_images, args.val_images)
    teacher = demo_model().eval()
    size = int(teacher.img_size)
    ev = DetectionEvaluator(val, size, bootstrap=1000, cache_images=True)
    base = teacher_m = ev(teacher)
    pruned = ep.prune(copy.deepcopy(teacher), torch.zeros(1, 3, size, size), sparsity=args.sparsity,
                      round_to=8)
    before = ev(pruned)
    print(f"teacher mAP50-95 {teacher_m['mAP50-95']:.4f}; pruned (uniform {args.sparsity:g}) before "
          f"fine-tuning {before['mAP50-95']:.4f}; {args.steps} steps, batch {args.batch_size}, "
          f"{args.train_images} train / {args.val_images} val images, {args.threads} threads", flush=True)
    rows, ref = [], {}
    for seed in args.seeds:
        for variant in args.variants:
            ft = _finetune(variant, teacher, train, size, args, seed)
            torch.manual_seed(seed)
            c0, w0 = time.process_time(), time.perf_counter()
            model = ft(copy.deepcopy(pruned).train(), args.steps)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            m = ev(model)
            matches = ev.last_matches
            if variant == "labels":
                ref[seed] = matches
            diff = paired_difference(matches, ref[seed]) if seed in ref and variant != "labels" else None
            row = {"variant": variant, "seed": seed, "mAP50-95": m["mAP50-95"], "low": m["mAP50-95_low"],
                   "high": m["mAP50-95_high"], "vs_labels": None if diff is None else diff.to_dict(),
                   "cpu_s": cpu, "wall_s": wall}
            rows.append(row)
            d = "" if diff is None else f"  vs labels {diff.point:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}]"
            print(f"{variant:22s} seed {seed}  mAP50-95 {m['mAP50-95']:.4f} [{m['mAP50-95_low']:.4f}, "
                  f"{m['mAP50-95_high']:.4f}]{d}  cpu {cpu:.0f} s wall {wall:.0f} s", flush=True)
    print("\n| variant | mean mAP50-95 | per seed | mean paired diff vs labels |\n|---|---|---|---|")
    for variant in args.variants:
        rs = [r for r in rows if r["variant"] == variant]
        diffs = [r["vs_labels"]["point"] for r in rs if r["vs_labels"]]
        mean_diff = f"{sum(diffs) / len(diffs):+.4f}" if diffs else "-"
        print(f"| {variant} | {sum(r['mAP50-95'] for r in rs) / len(rs):.4f} | "
              + ", ".join(f"{r['mAP50-95']:.4f}" for r in rs) + f" | {mean_diff} |")
    if args.json:
        args.json.write_text(json.dumps({"teacher": base, "before": before, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
