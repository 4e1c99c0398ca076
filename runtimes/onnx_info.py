"""Input/output names, shapes and dtypes of an ONNX file, for runtimes whose API does not expose them
(OpenCV DNN) and for making random inputs. Uses the ``onnx`` package, imported lazily.
"""

from __future__ import annotations

import os

import numpy as np

from edgeprune.errors import InvalidModelError, MissingDependencyError
from edgeprune.runtimes.base import TensorSpec


def _onnx():
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", None, "needed to read ONNX input/output specs") from None
    return onnx


def io_specs(onnx_path: str | os.PathLike) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of the graph; initializers listed as inputs (old exporters) are skipped."""
    onnx = _onnx()
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as exc:
        raise InvalidModelError(f"cannot read ONNX file {onnx_path}: {exc}") from exc
    inits = {i.name for i in model.graph.initializer}

    def spec(vi) -> TensorSpec:
        t = vi.type.tensor_type
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim
        )
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type))
        return TensorSpec(vi.name, dims, dtype)

    inputs = [spec(v) for v in model.graph.input if v.name not in inits]
    outputs = [spec(v) for v in model.graph.output]
    return inputs, outputs


def specs_to_meta(specs: list[TensorSpec]) -> list[dict]:
    """JSON-able form stored in artifact meta."""
    return [{"name": s.name, "shape": list(s.shape), "dtype": str(s.dtype)} for s in specs]


def specs_from_meta(items: list[dict]) -> list[TensorSpec]:
    return [TensorSpec(d["name"], tuple(d["shape"]), np.dtype(d["dtype"])) for d in items]


def filled_feeds(inputs: list[TensorSpec], img_size: tuple[int, int] | None = None,
                 seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs in [0, 1) for timing: a dynamic dim becomes 1, or an image input's H, W ``img_size``.

    Inputs never affect a conv's cost, so a fixed pseudo-image serves every candidate alike.
    """
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        static = all(isinstance(d, int) and d > 0 for d in spec.shape)
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        if img_size is not None and len(shape) == 4 and not static:
            shape = [1, shape[1], *img_size]
        feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
    return feeds


def random_feeds(
    inputs: list[TensorSpec], seed: int = 0, shapes: dict | None = None
) -> dict[str, np.ndarray]:
    """Random inputs of each input's static shape (or ``shapes[name]``); floats in [0, 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in inputs:
        shape = tuple((shapes or {}).get(s.name, s.shape))
        if not all(isinstance(d, int) and d > 0 for d in shape):
            raise InvalidModelError(f"input {s.name!r} has dynamic shape {s.shape}; give a static shape")
        if np.issubdtype(s.dtype, np.floating):
            feeds[s.name] = rng.random(shape, dtype=np.float32).astype(s.dtype)
        else:
            feeds[s.name] = rng.integers(0, 2, size=shape).astype(s.dtype)
    return feeds
