"""A fake target whose latency is a known step function of the conv channel counts in an ONNX file."""

from __future__ import annotations

import math
from pathlib import Path

STEP = 16  # channels per step: 9..16 channels cost as much as 16
FIXED_MS = 0.5  # what a whole model costs beyond its convs
UNIT = 1e-4


def step(c: int, size: int = STEP) -> int:
    return math.ceil(c / size)


def conv_ms(cin: int, cout: int, h: int, w: int, k: int, size: int = STEP) -> float:
    """A conv's latency: a staircase (``size`` channels per step) in each channel count, times its work."""
    return UNIT * step(cin, size) * step(cout, size) * h * w * k * k


def onnx_ms(path: str | Path, size: int = STEP) -> tuple[float, int]:
    """Latency of an ONNX file on the fake target, and how many Conv nodes it has."""
    import onnx

    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*m.graph.input, *m.graph.value_info, *m.graph.output]}
    dims = {i.name: list(i.dims) for i in m.graph.initializer}
    total, n = 0.0, 0
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        w = dims[node.input[1]]
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        h, wd = shapes[node.input[0]][2:4]
        total += conv_ms(w[1] * group, w[0], h, wd, w[2], size)
        n += 1
    return total, n


class FakeProfiler:
    """``Profiler`` for tests: no runtime, latency from ``onnx_ms`` (+ FIXED_MS for whole models).

    ``step``: channels per latency step; two profilers with different steps are two different targets.
    """

    def __init__(self, version: str = "1.0", threads: int = 2, step: int = STEP) -> None:
        self.version, self.threads, self.step = version, threads, step
        self.calls: list[list[str]] = []

    def key(self) -> dict:
        return {"runtime": "fake", "runtime_version": self.version, "precision": "fp32",
                "threads": self.threads, "options": {} if self.step == STEP else {"step": self.step},
                "device": None}

    def measure(self, files, whole=False):
        self.calls.append(sorted(files))
        return {n: onnx_ms(p, self.step)[0] + (FIXED_MS if whole else 0.0) for n, p in files.items()}
