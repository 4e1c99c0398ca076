"""Tiny ONNX models built with onnx.helper (torch-free) and their numpy references."""

from __future__ import annotations

import numpy as np
import pytest
from onnx_models import save_onnx


def make_conv_relu(path, h: int = 8, w: int = 8, cin: int = 3, cout: int = 4, seed: int = 0):
    """Conv3x3(pad 1)+Relu with known weights; returns (path, W, B)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    W = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    B = rng.standard_normal(cout).astype(np.float32)
    nodes = [helper.make_node("Conv", ["images", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["output"])]
    inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")]
    save_onnx(path, nodes, inits, [1, cin, h, w], [1, cout, h, w], name="conv_relu", opset=17)
    return path, W, B


def conv_relu_reference(x: np.ndarray, W: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Numpy Conv3x3 pad 1 + Relu, NCHW."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, W.shape[0], h, w), dtype=np.float64)
    for i in range(3):
        for j in range(3):
            patch = xp[:, :, i : i + h, j : j + w]
            out += np.einsum("nchw,oc->nohw", patch, W[:, :, i, j])
    out += B[None, :, None, None]
    return np.maximum(out, 0).astype(np.float32)


@pytest.fixture
def tiny_onnx(tmp_path):
    """(path, W, B) of a 1x3x8x8 Conv+Relu model."""
    return make_conv_relu(tmp_path / "tiny.onnx")
