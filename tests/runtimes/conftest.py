"""Tiny ONNX models built with onnx.helper (torch-free) and their numpy references."""

from __future__ import annotations

import numpy as np
import pytest


def make_conv_relu(path, h: int = 8, w: int = 8, cin: int = 3, cout: int = 4, seed: int = 0):
    """Conv3x3(pad 1)+Relu with known weights; returns (path, W, B)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    W = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
    B = rng.standard_normal(cout).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "W", "B"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["output"]),
        ],
        "conv_relu",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, cin, h, w])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, h, w])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every runtime installed here
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
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
