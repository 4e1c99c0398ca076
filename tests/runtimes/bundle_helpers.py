"""A torch-free ONNX "detector" of one dark rectangle, for bundle geometry tests.

The graph marks pixels whose three channels are all < 0.2 (a dark box on a bright image; the
letterbox pad 114/255 is not dark), takes the bounding box of those pixels in network-input pixels
and outputs it as one detection row ``(cx, cy, w, h, obj, p_cls0, p_cls1)`` of class 1.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from onnx_models import save_onnx


def dark_box_onnx(path, h: int = 64, w: int = 96, class_names=("a", "b"), sparsity: float = 0.0) -> str:
    """Write the detector to ``path`` with edgeprune metadata; returns the path."""
    big = float(max(h, w) * 10)
    inits = [
        numpy_helper.from_array(np.array(0.2, np.float32), "thr"),
        numpy_helper.from_array(np.arange(w, dtype=np.float32)[None], "ar_w"),  # [1, W]
        numpy_helper.from_array(np.arange(h, dtype=np.float32)[None], "ar_h"),  # [1, H]
        numpy_helper.from_array(np.array(big, np.float32), "big"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([[0.1, 0.9]], np.float32), "cls"),  # [1, 2]
        numpy_helper.from_array(np.array([1, 1, 7], np.int64), "out_shape"),
    ]
    n = helper.make_node
    nodes = [
        n("ReduceMax", ["images"], ["cmax"], axes=[1], keepdims=0),  # [1, H, W]
        n("Less", ["cmax", "thr"], ["dark_b"]),
        n("Cast", ["dark_b"], ["dark"], to=TensorProto.FLOAT),
        n("ReduceMax", ["dark"], ["col"], axes=[1], keepdims=0),  # [1, W]
        n("ReduceMax", ["dark"], ["row"], axes=[2], keepdims=0),  # [1, H]
    ]
    for axis, m, ar in (("x", "col", "ar_w"), ("y", "row", "ar_h")):
        nodes += [
            n("Mul", [m, ar], [f"{axis}_pos"]),
            n("ReduceMax", [f"{axis}_pos"], [f"{axis}2"], axes=[1], keepdims=1),  # [1, 1]
            n("Sub", ["one", m], [f"{axis}_not"]),
            n("Mul", [f"{axis}_not", "big"], [f"{axis}_pen"]),
            n("Add", [f"{axis}_pos", f"{axis}_pen"], [f"{axis}_lo"]),
            n("ReduceMin", [f"{axis}_lo"], [f"{axis}1"], axes=[1], keepdims=1),
            n("Add", [f"{axis}2", "one"], [f"{axis}2e"]),  # exclusive right edge
            n("Sub", [f"{axis}2e", f"{axis}1"], [f"{axis}_size"]),
            n("Add", [f"{axis}1", f"{axis}2e"], [f"{axis}_sum"]),
            n("Mul", [f"{axis}_sum", "half"], [f"{axis}_c"]),
        ]
    nodes += [
        n("ReduceMax", ["col"], ["obj"], axes=[1], keepdims=1),
        n("Concat", ["x_c", "y_c", "x_size", "y_size", "obj", "cls"], ["row7"], axis=1),  # [1, 7]
        n("Reshape", ["row7", "out_shape"], ["output"]),
    ]
    meta = {
        "input_name": "images",
        "input_size": [h, w],
        "layout": "NCHW",
        "color": "RGB",
        "letterbox": {"pad_value": 114},
        "normalization": {"scale": 1 / 255},
        "class_names": list(class_names),
        "output_layout": "cxcywh_obj_cls",
        "sparsity": sparsity,
        "plan_sha256": "0" * 64,
    }
    return save_onnx(path, nodes, inits, [1, 3, h, w], [1, 1, 7], name="dark_box", meta=meta)


def image_with_box(shape=(120, 200), box=(50, 30, 110, 80)) -> np.ndarray:
    """A bright BGR image (h, w) with a black rectangle ``box`` = (x1, y1, x2, y2) exclusive."""
    img = np.full((*shape, 3), 200, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 0
    return img
