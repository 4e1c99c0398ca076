"""Tiny detector-shaped ONNX candidates (two convs of ``width`` channels) for sweep tests, no torch."""

from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper
from onnx_models import save_onnx  # tests/runtimes is on pytest's pythonpath


def conv_candidate(
    path, width: int, size: int = 32, n_classes: int = 2, sparsity: float = 0.0, seed: int = 0
):
    """Conv(3->width, s2) ReLU Conv(width->width) ReLU Conv(width->5+C) Sigmoid -> [1, N, 5+C]."""
    rng = np.random.default_rng(seed)
    no = 5 + n_classes

    def w(shape):  # realistic scale, so no denormals
        return (rng.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5).astype(np.float32)

    hw = (size // 2) ** 2
    inits = [
        numpy_helper.from_array(w((width, 3, 3, 3)), "w1"),
        numpy_helper.from_array(np.zeros(width, np.float32), "b1"),
        numpy_helper.from_array(w((width, width, 3, 3)), "w2"),
        numpy_helper.from_array(np.zeros(width, np.float32), "b2"),
        numpy_helper.from_array(w((no, width, 1, 1)), "w3"),
        numpy_helper.from_array(np.zeros(no, np.float32), "b3"),
        numpy_helper.from_array(np.array([1, no, hw], np.int64), "shape"),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["images", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        n("Relu", ["c1"], ["r1"]),
        n("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        n("Relu", ["c2"], ["r2"]),
        n("Conv", ["r2", "w3", "b3"], ["c3"]),
        n("Sigmoid", ["c3"], ["s3"]),
        n("Reshape", ["s3", "shape"], ["flat"]),
        n("Transpose", ["flat"], ["output"], perm=[0, 2, 1]),
    ]
    meta = {
        "input_name": "images",
        "input_size": [size, size],
        "class_names": [f"k{i}" for i in range(n_classes)],
        "output_layout": "cxcywh_obj_cls",
        "sparsity": sparsity,
        "plan_sha256": f"{width:064d}",
    }
    return save_onnx(path, nodes, inits, [1, 3, size, size], [1, hw, no], meta=meta)
