"""Reproduce edgeprune's demo model: yolov7_tiny trained from scratch, on CPU, on synthetic defects.

    python examples/train_demo_model.py                      # full run (~35 min on one busy CPU core)
    python examples/train_demo_model.py --steps 50 --train-images 64 --out /tmp/demo_try   # smoke run
    python examples/train_demo_model.py --eval-only          # re-measure the shipped weights

Steps: generate the synthetic train set (seed 0) and the fixed val set (seed 1), train with AdamW +
warm-up + cosine + EMA (checkpoints in --ckpt-dir; ``--resume`` continues an interrupted run), save
the EMA weights as a float16 state_dict, then measure mAP50-95 / mAP50 on the val set with
DetectionEvaluator and write everything to ``yolov7_tiny_synth.json`` next to the weights.
"""

from __future__ import annotations

import argparse
import io
import platform
import time
from pathlib import Path

import torch

from edgeprune.fileio import atomic_write_bytes, read_json, write_json

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "edgeprune" / "models" / "weights"
NAME = "yolov7_tiny_synth"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="/tmp/edgeprune_demo_data", help="where the synthetic sets go")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the .pt and .json")
    p.add_argument("--ckpt-dir", default="/tmp/edgeprune_demo_ckpt")
    p.add_argument("--train-images", type=int, default=1000)
    p.add_argument("--val-images", type=int, default=200)
    p.add_argument("--gen-size", type=int, default=320, help="size of the generated images (square)")
    p.add_argument("--img-size", type=int, default=256, help="network input size (multiple of 32)")
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 is fastest on a busy 2-core machine")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from --ckpt-dir/last.pt")
    p.add_argument("--eval-only", action="store_true", help="only evaluate the weights in --out")
    return p.parse_args()


def make_data(args: argparse.Namespace) -> tuple[Path, Path]:
    """Generate (or reuse, if complete) the train (seed 0) and val (seed 1) sets."""
    from edgeprune.data.synthetic import generate

    root = Path(args.data_dir)
    sets = {"train": (args.train_images, 0), "val": (args.val_images, 1)}
    for name, (n, seed) in sets.items():
        d = root / name
        done = (d / "data.yaml").exists() and len(list((d / "images").glob("*.jpg"))) == n
        if not done or f"seed: {seed}" not in (d / "data.yaml").read_text():
            print(f"generating {n} {name} images (seed {seed}) in {d}")
            generate(d, n, seed=seed, img_size=(args.gen_size, args.gen_size))
    return root / "train", root / "val"


def train(args: argparse.Namespace, train_dir: Path) -> tuple[torch.nn.Module, dict]:
    """Train yolov7_tiny from scratch; returns the EMA model and the training record."""
    from edgeprune.data import YoloDataset, collate
    from edgeprune.models import yolov7_tiny
    from edgeprune.training import LabeledObjective, TrainConfig, Trainer

    dataset = YoloDataset(train_dir, args.img_size, augment=True, cache=True, seed=args.seed)
    model = yolov7_tiny(num_classes=len(dataset.names), names=dataset.names)
    cfg = TrainConfig(
        optimizer="adamw", lr=args.lr, momentum=0.9, weight_decay=5e-4, warmup_steps=args.warmup,
        final_lr=0.05, batch_size=args.batch, seed=args.seed, ema=True, ema_tau=500.0,
        ckpt_dir=args.ckpt_dir, ckpt_every=100, resume=args.resume, progress=True,
    )
    trainer = Trainer(model, LabeledObjective(model, args.img_size), dataset, cfg, collate_fn=collate)
    if trainer.step:
        print(f"resuming at step {trainer.step}")
    model = trainer.train(args.steps).eval()
    tail = trainer.history[-50:]
    record = {
        "steps": args.steps,
        "batch_size": args.batch,
        "optimizer": "adamw",
        "lr": args.lr,
        "warmup_steps": args.warmup,
        "schedule": "linear warm-up then cosine to 0.05 x lr",
        "ema": {"tau": 500.0, "decay": 0.9999},
        "augment": "horizontal flip + HSV jitter",
        "train_images": args.train_images,
        "train_seed": 0,
        "train_seconds": round(trainer.train_seconds, 1),
        "steps_per_second": round((trainer.step - trainer.start_step) / max(trainer.train_seconds, 1e-9), 4),
        "final_loss": round(sum(h["loss"] for h in tail) / max(len(tail), 1), 4),
        "threads": torch.get_num_threads(),
        "device": f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
    }
    return model, record


def save_weights(model: torch.nn.Module, path: Path) -> None:
    """Float16 state_dict (half the size; cast back to float32 on load)."""
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def evaluate(model: torch.nn.Module, val_dir: Path, img_size: int) -> dict:
    """mAP50-95 / mAP50 on the fixed val set (fp16-rounded weights, exactly what ships)."""
    from edgeprune.evaluation import DetectionEvaluator

    evaluator = DetectionEvaluator(val_dir, img_size)
    t0 = time.perf_counter()
    metrics = evaluator(model)
    return {
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
        "eval_settings": evaluator.settings(),
        "eval_seconds": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    weights, info_path = out / f"{NAME}.pt", out / f"{NAME}.json"
    train_dir, val_dir = make_data(args)
    if args.eval_only:
        info = read_json(info_path)
    else:
        model, record = train(args, train_dir)
        save_weights(model, weights)
        info = {
            "arch": "yolov7_tiny",
            "names": list(model.names),
            "num_classes": len(model.names),
            "img_size": args.img_size,
            "data": {"generator": "edgeprune.data.synthetic", "gen_size": [args.gen_size, args.gen_size],
                     "train": {"n_images": args.train_images, "seed": 0},
                     "val": {"n_images": args.val_images, "seed": 1}},
            "training": record,
        }
        write_json(info_path, info)  # written before evaluation so a failed eval loses nothing
        print(f"saved {weights} ({weights.stat().st_size / 1e6:.1f} MB)")
    from edgeprune.models.demo import demo_model

    model = demo_model() if out.resolve() == DEFAULT_OUT.resolve() else _load(weights, info)
    info["data"] = _data_record(args, info.get("data", {}))
    info["evaluation"] = {"val_images": args.val_images, **evaluate(model, val_dir, int(info["img_size"]))}
    write_json(info_path, info)
    print(info["evaluation"])


def _data_record(args: argparse.Namespace, data: dict) -> dict:
    """The generator's output hashes of both sets: a test checks today's generator still draws them."""
    from edgeprune.data.synthetic import output_sha256

    size = (args.gen_size, args.gen_size)
    for name, (n, seed) in {"train": (args.train_images, 0), "val": (args.val_images, 1)}.items():
        data.setdefault(name, {"n_images": n, "seed": seed})
        if data[name].get("n_images") == n:
            data[name].update(output_sha256(n, seed=seed, img_size=size))
    return data


def _load(weights: Path, info: dict) -> torch.nn.Module:
    from edgeprune.models import yolov7_tiny

    model = yolov7_tiny(num_classes=len(info["names"]), names=info["names"])
    state = torch.load(weights, map_location="cpu", weights_only=True)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    model.img_size = int(info["img_size"])
    return model.eval()


if __name__ == "__main__":
    main()
