"""``edgeprune synth-data OUT``: write a synthetic surface-inspection dataset (YOLO format)."""

from __future__ import annotations

import argparse

from edgeprune.cli.parsing import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(
        sub, "synth-data", run,
        help="generate a synthetic defect-inspection dataset (YOLO format + data.yaml)",
        description="Draw scratch / dent / stain / crack / missing_hole defects on metal, fabric, "
        "PCB-like and painted surfaces. Deterministic by --seed.",
    )
    p.add_argument("out", help="output folder (created; must be empty or a previous synthetic dataset)")
    p.add_argument("--images", type=int, default=500, help="number of images (default 500)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=(320, 320),
                   help="image height and width in pixels (default 320 320)")
    p.add_argument("--video", metavar="PATH", default=None,
                   help="also write a conveyor-like inspection video (.mp4 or .avi)")
    p.add_argument("--frames", type=int, default=120, help="video frames (default 120)")


def run(args: argparse.Namespace) -> int:
    import time

    from edgeprune.data.synthetic import CLASSES, generate, generate_video

    t0 = time.perf_counter()
    out = generate(args.out, args.images, seed=args.seed, img_size=tuple(args.size))
    print(f"wrote {args.images} images ({args.size[0]}x{args.size[1]}, classes: {', '.join(CLASSES)}) "
          f"to {out} in {time.perf_counter() - t0:.1f} s; dataset: {out / 'data.yaml'}")
    if args.video:
        path = generate_video(args.video, args.frames, seed=args.seed)
        print(f"wrote video {path} ({args.frames} frames)")
    return 0
