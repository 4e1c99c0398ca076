"""How much mAP moves when only the validation images change: the basis of the default accuracy floor.

    python benchmarks/accuracy_noise.py [--sets 5] [--images 200 32] [--threads 1]

Evaluates the shipped demo model (unchanged weights) on several synthetic validation sets drawn with
different seeds, for each set size, and prints mAP50-95 / mAP50 per set, their mean, standard
deviation and the spread relative to the mean. A pruned candidate as good as its parent can score
lower than it by about this much on one set, so an accuracy floor must sit below the parent by more
than this spread; ``ep.sweep``'s default floor (0.9 x the unpruned metric) is checked against it.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", type=int, default=5, help="validation sets per size (seeds 11, 12, ...)")
    ap.add_argument("--images", type=int, nargs="+", default=[200, 32], help="images per set")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    args = ap.parse_args(argv)

    import torch

    from edgeprune.data.synthetic import generate
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.models import demo_model
    from edgeprune.models.demo import demo_model_info

    torch.set_num_threads(args.threads)
    model = demo_model()
    gen = tuple(demo_model_info()["data"]["gen_size"])
    print(f"demo model, input {model.img_size}; {args.sets} validation sets per size (seeds 11..)")
    print(f"{'images':>6} {'seed':>4} {'mAP50-95':>9} {'mAP50':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.images:
            scores = []
            for k in range(args.sets):
                seed = 11 + k
                d = generate(Path(tmp) / f"val_{n}_{seed}", n, seed=seed, img_size=gen, progress=False)
                m = DetectionEvaluator(d, model.img_size)(model)
                scores.append(m["mAP50-95"])
                print(f"{n:>6} {seed:>4} {m['mAP50-95']:>9.4f} {m['mAP50']:>7.4f}", flush=True)
            mean, sd = statistics.mean(scores), statistics.stdev(scores) if len(scores) > 1 else 0.0
            lo, hi = min(scores), max(scores)
            print(f"{n:>6} mean {mean:.4f}  sd {sd:.4f} ({sd / mean:.1%} of the mean)  "
                  f"range {lo:.4f}-{hi:.4f} ({(hi - lo) / mean:.1%})  lowest / mean {lo / mean:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
