"""Your own Ultralytics detector (YOLOv8n here) through edgeprune: train briefly, prune, sweep, bundle.

    pip install 'edgeprune[ultralytics]'
    python examples/prune_ultralytics.py --out runs/ultra           # small settings, ~30 min on 2 cores

1. Synthetic inspection data at 320 px (5 defect classes), written in YOLO format.
2. YOLOv8n built from Ultralytics' own YAML (no download), trained briefly with Ultralytics' loss, and
   saved the way ``yolo train`` saves ``best.pt``; then loaded back with ``ep.models.load`` as any
   user's checkpoint would be (Ultralytics' restricted loader: no code in the file runs).
3. Iterative sensitivity pruning (the box-regression output convs are kept: ``model.prune_exclude``).
4. Every candidate swept on every installed CPU runtime; the knee per target is bundled.
5. The bundle run on the val images the way the OpenCV app runs it (``load_bundle(...).detect``).

Every number printed is measured in this run; on a shared machine latency is noisy (the sweep
interleaves candidates and reports medians and CoV).
"""

from __future__ import annotations

import argparse
import os
import time
from copy import deepcopy
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics: no network checks

import cv2  # noqa: E402
import torch  # noqa: E402

import edgeprune as ep  # noqa: E402
from edgeprune import runtimes  # noqa: E402
from edgeprune.data.synthetic import generate  # noqa: E402
from edgeprune.deploy.config import DatasetPickEvaluator  # noqa: E402
from edgeprune.evaluation import DetectionEvaluator  # noqa: E402
from edgeprune.iterative import SerialExecutor  # noqa: E402
from edgeprune.training import LabeledFinetune  # noqa: E402

NAMES = ["scratch", "dent", "stain", "crack", "missing_hole"]


def save_like_yolo_train(model: torch.nn.Module, path: Path, size: int) -> None:
    """The checkpoint layout of Ultralytics' trainer (EMA in fp16 under 'ema', 'model' None, args)."""
    torch.save({"epoch": -1, "best_fitness": None, "model": None, "ema": deepcopy(model.model).half(),
                "updates": None, "optimizer": None, "train_args": {"imgsz": size, "model": "yolov8n.yaml"},
                "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": "edgeprune-example"}, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/ultralytics_example")
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--train-images", type=int, default=200)
    ap.add_argument("--val-images", type=int, default=40)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--finetune-steps", type=int, default=60)
    ap.add_argument("--eval-images", type=int, default=24, help="val images per sensitivity evaluation")
    args = ap.parse_args()
    out, size = Path(args.out), args.size
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)

    if not (out / "train" / "images").is_dir():
        generate(out / "train", args.train_images, seed=1, img_size=(size, size))
        generate(out / "val", args.val_images, seed=2, img_size=(size, size))

    ckpt = out / "best.pt"
    if not ckpt.is_file():
        t0 = time.perf_counter()
        model = ep.models.load("yolov8n.yaml", num_classes=len(NAMES))
        model.names = NAMES
        model.model.names = dict(enumerate(NAMES))
        model = LabeledFinetune(out / "train", size, batch_size=8, lr=2e-3)(model, args.train_steps)
        save_like_yolo_train(model, ckpt, size)
        print(f"trained YOLOv8n for {args.train_steps} steps in {time.perf_counter() - t0:.0f} s")

    def load() -> torch.nn.Module:
        return ep.models.load(ckpt)

    model = load()
    x = torch.zeros(1, 3, size, size)
    full_eval = DetectionEvaluator(out / "val", size)
    print(f"loaded {ckpt}: {ep.count_params(model):,} parameters, mAP50 {full_eval(model)['mAP50']:.3f}")

    result = ep.iterative_prune(
        model, x, DetectionEvaluator(out / "val", size, max_images=args.eval_images),
        LabeledFinetune(out / "train", size, batch_size=8, lr=1e-3), run_dir=out / "prune",
        iterations=args.iterations, finetune_steps=args.finetune_steps, rates=(0.5,), round_to=8,
        executor=SerialExecutor())
    print(result.table())

    from edgeprune.runtimes.registry import available

    installed = [n for n in ("onnxruntime", "openvino", "opencv") if n in available()]
    res = ep.sweep(out / "prune", targets=[{"runtime": n, "threads": 2} for n in installed],
                   out_dir=out / "sweep", model_factory=load, img_size=size,
                   evaluator=DatasetPickEvaluator(out / "val", size))
    print((out / "sweep" / "report.md").read_text(encoding="utf-8") if (out / "sweep" / "report.md").is_file()
          else res.targets)

    for bundle in sorted((out / "sweep" / "bundles").iterdir()):
        with runtimes.load_bundle(bundle) as det:
            images = sorted((out / "val" / "images").glob("*.jpg"))
            n_boxes = sum(len(det.detect(cv2.imread(str(p)))) for p in images)
            t = det.timings
            print(f"{bundle.name}: {n_boxes} boxes on {len(images)} images; per image pre "
                  f"{t['avg_pre_ms']:.1f} ms, infer {t['avg_infer_ms']:.1f} ms, "
                  f"post {t['avg_post_ms']:.1f} ms")


if __name__ == "__main__":
    main()
