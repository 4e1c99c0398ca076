"""Writing the tests' small ONNX models (torch-free; onnx is imported only when one is written)."""

from __future__ import annotations

import json
from typing import Any


def save_onnx(path, nodes: list, inits: list, in_shape: list[int], out_shape: list[int], name: str = "tiny",
              opset: int = 13, meta: dict[str, Any] | None = None) -> str:
    """Check and write the graph ``images [in_shape] -> output [out_shape]`` (float32), with edgeprune's
    metadata when ``meta`` is given; returns the path as a string."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # readable by every runtime installed here
    if meta is not None:
        helper.set_model_props(model, {"edgeprune": json.dumps(meta)})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)
