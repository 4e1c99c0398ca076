"""Each candidate of a finished demo run against the unpruned model, on the same resampled images.

    .venv/bin/python benchmarks/paired_accuracy.py demo_full_out [--n-boot 1000]

Scores every candidate of ``OUT/prune`` on ``OUT/data/val`` (mAP50-95 with its 95 % bootstrap interval
over images), then prints the paired difference candidate - unpruned: both scored on the same 1,000
resamples of the validation images (``edgeprune.evaluation.bootstrap.paired_difference``), which is far
narrower than comparing two separate intervals. A difference whose interval lies above -0.01 shows that
at most one mAP50-95 point was lost.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="a demo output folder (holding prune/ and data/val)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)

    import torch

    from edgeprune.deploy.candidate_files import candidates_from_run
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.evaluation.bootstrap import paired_difference
    from edgeprune.models import demo_model

    torch.set_num_threads(a.threads)
    size = int(demo_model().img_size)
    ev = DetectionEvaluator(a.out / "data" / "val", size, batch_size=8, bootstrap=a.n_boot, cache_images=True)
    rows, matches = [], {}
    for c in candidates_from_run(a.out / "prune", demo_model):
        m = ev(c.load_model())
        matches[c.id] = ev.last_matches
        rows.append((c.id, c.sparsity, m))
    base_id = rows[0][0]
    print(f"{a.out}: mAP50-95 on {ev.settings()['n_images']} validation images, 95 % intervals over "
          f"{a.n_boot} resamples; difference = candidate - {base_id} on the same resamples\n")
    print("| candidate | param sparsity | mAP50-95 [interval] | minus unpruned (paired) |")
    print("|---|---|---|---|")
    for cid, sp, m in rows:
        diff = "-"
        if cid != base_id:
            d = paired_difference(matches[cid], matches[base_id], n_boot=a.n_boot)
            diff = f"{d.point:+.4f} [{d.low:+.4f}, {d.high:+.4f}]"
        print(f"| {cid} | {sp:.1%} | {m['mAP50-95']:.4f} [{m['mAP50-95_low']:.4f}, {m['mAP50-95_high']:.4f}] "
              f"| {diff} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
