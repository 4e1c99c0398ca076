"""Fine-tuning throughput (optimizer steps per second) of the demo detector, setting by setting.

Settings, each a ``LabeledFinetune`` on the demo's synthetic training images (batch 8, 256x256):

    baseline       images decoded and letterboxed on every access, NCHW, no loader workers
    cache          decoded, letterboxed images cached in memory (augmentation still per step)
    cache+nhwc     ... and channels-last memory format
    cache+worker   ... and one DataLoader worker process (workers restart every epoch)

The settings run interleaved (A B C D, A B C D, ...) for ``--rounds`` rounds of ``--steps`` steps, so
a machine shared with other jobs slows them alike; the table gives the median steps/s, its CoV over
rounds, and the process CPU seconds per step (workers' CPU not included).

    python benchmarks/bench_finetune.py [--steps 8] [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

SETTINGS = {
    "baseline": {"cache_images": False},
    "cache": {"cache_images": True},
    "cache+nhwc": {"cache_images": True, "channels_last": True},
    "cache+worker": {"cache_images": True, "num_workers": 1},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", type=int, default=160)
    ap.add_argument("--data", type=Path,
                    default=Path(tempfile.gettempdir()) / "edgeprune_bench" / "finetune_data")
    ap.add_argument("--only", nargs="+", default=list(SETTINGS))
    args = ap.parse_args()

    import torch

    from edgeprune.data import synthetic
    from edgeprune.models import demo_model
    from edgeprune.models.demo import demo_model_info
    from edgeprune.training import LabeledFinetune

    torch.set_num_threads(args.threads)
    gen = tuple(demo_model_info().get("data", {}).get("gen_size", (320, 320)))
    if not (args.data / "data.yaml").exists():
        synthetic.generate(args.data, args.images, seed=100, img_size=gen, progress=False)
    model = demo_model()
    size = int(model.img_size)
    fts = {name: LabeledFinetune(args.data, size, batch_size=8, progress=False, bn_recalibrate=0, **kw)
           for name, kw in SETTINGS.items() if name in args.only}
    rates: dict[str, list[float]] = {n: [] for n in fts}
    cpu: dict[str, list[float]] = {n: [] for n in fts}
    for ft in fts.values():  # warm-up: first decode (fills the caches) and first kernels
        ft(model.train(), 2)
    for _ in range(args.rounds):
        for name, ft in fts.items():
            c0, t0 = time.process_time(), time.perf_counter()
            ft(model.train(), args.steps)
            wall, c = time.perf_counter() - t0, time.process_time() - c0
            rates[name].append(args.steps / wall)
            cpu[name].append(c / args.steps)
    base = statistics.median(rates["baseline"]) if "baseline" in rates else None
    print(f"threads {args.threads}, batch 8, {size}x{size}, {args.steps} steps x {args.rounds} rounds, "
          f"interleaved; torch {torch.__version__}")
    print(f"{'setting':14s} {'steps/s':>8s} {'CoV':>6s} {'CPU s/step':>10s} {'vs baseline':>11s}")
    for name in fts:
        med = statistics.median(rates[name])
        cov = statistics.pstdev(rates[name]) / statistics.mean(rates[name])
        rel = f"{med / base:.2f}x" if base else "-"
        print(f"{name:14s} {med:8.3f} {cov:6.1%} {statistics.median(cpu[name]):10.3f} {rel:>11s}")


if __name__ == "__main__":
    main()
