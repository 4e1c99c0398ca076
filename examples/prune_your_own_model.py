"""Pruning your own model: a model class you define, traced automatically (no hand-written graph).

    python examples/prune_your_own_model.py [--sparsity 0.5] [--img-size 256] [--threads 2]

edgeprune follows the real dataflow of one forward pass, so concatenations, residual adds, chunks,
shared modules and Python branches in the head are handled without a per-architecture config.
The script prints the channel groups it found, prunes 50% of the filters (kept counts rounded to a
multiple of 8, the channel multiple that suits AVX2 CPUs and TensorRT FP16), checks the plan replays
on a fresh instance, exports both models to ONNX and times them side by side on ONNX Runtime.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
from torch import nn

import edgeprune as ep
from edgeprune import runtimes


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class SplitBlock(nn.Module):
    """A C2f-like block: chunk the channels, run a bottleneck on one half, concatenate everything."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1 = ConvBN(c, c, 1)
        self.m = nn.Sequential(ConvBN(c // 2, c // 2), ConvBN(c // 2, c // 2))
        self.cv2 = ConvBN(c + c // 2, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat([a, b, self.m(b)], 1)) + x  # residual add couples channels


class MyDetector(nn.Module):
    """A small two-scale detector with an FPN-style upsample + concat and a decoded eval head."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 32, 3, 2), ConvBN(32, 64, 3, 2), SplitBlock(64))
        self.down = nn.Sequential(ConvBN(64, 128, 3, 2), SplitBlock(128))
        self.up = nn.Upsample(scale_factor=2)
        self.fuse = ConvBN(128 + 64, 64)
        self.head_small = nn.Conv2d(64, 5 + num_classes, 1)   # output convs: never pruned
        self.head_large = nn.Conv2d(128, 5 + num_classes, 1)

    def forward(self, x: torch.Tensor):
        p1 = self.stem(x)
        p2 = self.down(p1)
        f = self.fuse(torch.cat([self.up(p2), p1], 1))
        outs = [self.head_small(f), self.head_large(p2)]
        if self.training:
            return outs
        return torch.cat([o.flatten(2).transpose(1, 2).sigmoid() for o in outs], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sparsity", type=float, default=0.5, help="fraction of filters removed (default 0.5)")
    ap.add_argument("--img-size", type=int, default=256, help="input size, a multiple of 32 (default 256)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads when timing (default 2)")
    args = ap.parse_args()
    torch.manual_seed(0)
    model = MyDetector().eval()
    x = torch.rand(1, 3, args.img_size, args.img_size)

    graph = ep.trace(model, x)
    print(graph.summary())

    plan = ep.plan(graph, sparsity=args.sparsity, criterion="l2", round_to=8)
    pruned = ep.apply(copy.deepcopy(model), plan)  # apply() works in place: keep the original
    print(f"params {ep.count_params(model):,} -> {ep.count_params(pruned):,}; "
          f"GFLOPs {ep.count_flops(model, x) / 1e9:.3f} -> {ep.count_flops(pruned, x) / 1e9:.3f}")

    # the plan is JSON: replay it on a fresh instance, load the pruned weights, same outputs
    replayed = ep.apply(MyDetector().eval(), ep.PruningPlan.from_json(plan.to_json()))
    replayed.load_state_dict(pruned.state_dict())
    torch.testing.assert_close(replayed(x), pruned(x))
    print("plan replayed on a fresh instance: identical outputs")

    work = Path(tempfile.mkdtemp(prefix="edgeprune-own-"))
    ep.export_onnx(model, x, work / "dense.onnx")
    meta = {"sparsity": args.sparsity, "plan_sha256": plan.sha256()}
    ep.export_onnx(pruned, x, work / "pruned.onnx", metadata=meta)
    rt = runtimes.get("onnxruntime")
    arts = {n: rt.compile(work / f"{n}.onnx", work / n, threads=args.threads) for n in ("dense", "pruned")}
    sessions = {n: rt.session(a) for n, a in arts.items()}
    try:  # sessions hold runtime resources: closed on every way out
        result = runtimes.compare(sessions, {"images": x.numpy()})
    finally:
        for s in sessions.values():
            s.close()
    for name, stats in result.items():
        ratio = result.ratio_to_first[name]
        print(f"{name:<7} median {stats.median_ms:.2f} ms  p90 {stats.p90_ms:.2f} ms  "
              f"CoV {stats.cov:.2f}  x{ratio:.2f} of dense")


if __name__ == "__main__":
    main()
