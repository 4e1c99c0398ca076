"""The conv layers a latency model is made of: their real sizes, the channel counts a plan leaves them,
and single-conv ONNX files at those sizes for profiling on a target.

Layers are listed in execution order (forward hooks). The ONNX export keeps that order for its Conv
nodes, which is how a candidate's ONNX file is matched to the layers (``convs_of_onnx``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import InvalidConfigError


@dataclass(frozen=True)
class ConvLayer:
    """One conv as it runs in the unpruned model: channels, kernel geometry and its real input size."""

    name: str  # module name in the PyTorch model ("" when read from ONNX only)
    cin: int
    cout: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    height: int  # input height and width at the example input size
    width: int

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin == self.cout

    @property
    def prunable_axes(self) -> bool:
        """Regular and depthwise convs scale with channels; other grouped convs are treated as fixed."""
        return self.groups == 1 or self.depthwise

    def signature(self) -> str:
        """Everything that sets this layer's cost (not its name): the cache key of its measurement."""
        k, s, p, d = self.kernel, self.stride, self.padding, self.dilation
        return (f"c{self.cin}x{self.cout}_k{k[0]}x{k[1]}_s{s[0]}x{s[1]}_p{p[0]}x{p[1]}_d{d[0]}x{d[1]}"
                f"_g{self.groups}_{self.height}x{self.width}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConvLayer:
        return cls(d["name"], int(d["cin"]), int(d["cout"]), *(tuple(d[k]) for k in
                   ("kernel", "stride", "padding", "dilation")), int(d["groups"]), int(d["height"]),
                   int(d["width"]))


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def conv_layers(model: Any, example_inputs: Any) -> list[ConvLayer]:
    """Every ``nn.Conv2d`` of ``model`` in execution order, with its input size (one forward pass)."""
    import torch
    from torch import nn

    seen: list[ConvLayer] = []
    names = {m: n for n, m in model.named_modules()}
    hooks = []

    def hook(mod, inputs, _out):
        x = inputs[0]
        if isinstance(mod.padding, str):
            raise InvalidConfigError(f"conv '{names[mod]}' uses padding={mod.padding!r}; the latency model "
                                     "needs numeric padding")
        seen.append(ConvLayer(names[mod], int(mod.in_channels), int(mod.out_channels), _pair(mod.kernel_size),
                              _pair(mod.stride), _pair(mod.padding), _pair(mod.dilation), int(mod.groups),
                              int(x.shape[-2]), int(x.shape[-1])))

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(*example_inputs) if isinstance(example_inputs, (tuple, list)) else model(example_inputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if len({layer.name for layer in seen}) != len(seen):
        raise InvalidConfigError("a conv module runs more than once per forward pass; the latency model "
                                 "needs each conv to run once")
    return seen


def channels_of_model(model: Any, layers: Sequence[ConvLayer]) -> list[tuple[int, int]]:
    """(cin, cout) of each layer in a (possibly pruned) PyTorch model, read from its conv weights."""
    out = []
    for layer in layers:
        m = model.get_submodule(layer.name)
        w = m.weight
        out.append((int(w.shape[1]) * int(m.groups), int(w.shape[0])))
    return out


def channels_of_onnx(path: str | Path) -> list[dict]:
    """Every Conv node of an ONNX file in graph order: cin, cout, kernel, stride, group, input h, w."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
                  [*onnx.shape_inference.infer_shapes(model).graph.value_info, *model.graph.input]}
    except Exception:  # shape inference is a help for matching, not a requirement
        shapes = {}
    dims = {i.name: list(i.dims) for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv" or len(n.input) < 2 or n.input[1] not in dims:
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        w = dims[n.input[1]]
        group = int(attrs.get("group", 1))
        hw = shapes.get(n.input[0], [])[2:4]
        out.append({"cin": w[1] * group, "cout": w[0], "kernel": tuple(w[2:4]),
                    "stride": tuple(attrs.get("strides", (1, 1))), "group": group,
                    "hw": tuple(hw) if len(hw) == 2 and all(hw) else None})
    return out


def onnx_order(path: str | Path, layers: Sequence[ConvLayer]) -> list[int] | None:
    """For each Conv node of the unpruned model's ONNX file (in node order), the index of its layer.

    Exporters may reorder nodes (graph simplifiers sort them), so layers are matched by their full
    signature; layers with equal signatures cost the same, so their order among themselves is free.
    None when the convs cannot be matched one to one.
    """
    convs = channels_of_onnx(path)
    if len(convs) != len(layers):
        return None
    free: dict[tuple, list[int]] = {}
    for k, la in enumerate(layers):
        free.setdefault((la.cin, la.cout, la.kernel, la.stride, la.groups), []).append(k)
    order = []
    for c in convs:
        pool = free.get((c["cin"], c["cout"], tuple(c["kernel"]), tuple(c["stride"]), c["group"]), [])
        if c["hw"] is not None:  # prefer the layer running at the same input size
            pool_hw = [k for k in pool if (layers[k].height, layers[k].width) == c["hw"]]
            pool = pool_hw or pool
        if not pool:
            return None
        k = pool[0]
        order.append(k)
        for lst in free.values():
            if k in lst:
                lst.remove(k)
    return order


def convs_of_onnx(path: str | Path, layers: Sequence[ConvLayer],
                  order: Sequence[int] | None = None) -> list[tuple[int, int]] | None:
    """(cin, cout) per layer read from a candidate's ONNX file; None when its convs do not line up.

    ``order`` maps the file's Conv nodes to layers (``onnx_order`` of the unpruned export); without
    it, node order is taken as execution order.
    """
    convs = channels_of_onnx(path)
    order = list(order) if order is not None else list(range(len(layers)))
    if len(convs) != len(layers) or sorted(order) != list(range(len(layers))):
        return None
    out: list[tuple[int, int]] = [(0, 0)] * len(layers)
    for c, k in zip(convs, order):
        layer = layers[k]
        if tuple(c["kernel"]) != layer.kernel or tuple(c["stride"]) != layer.stride:
            return None
        if c["hw"] is not None and c["hw"] != (layer.height, layer.width):
            return None
        out[k] = (int(c["cin"]), int(c["cout"]))
    return out


def channels_after(layers: Sequence[ConvLayer], current: Sequence[tuple[int, int]], graph: Any,
                   removed: Mapping[str, int]) -> list[tuple[int, int]]:
    """(cin, cout) per layer after removing ``removed[group_id]`` channels from each group of ``graph``.

    Each member of a group on a conv weight loses ``removed x member.size / group.channels`` entries on
    its dim (a coupled channel counts once in ``channels`` but may span several entries).
    """
    index = {f"{layer.name}.weight": k for k, layer in enumerate(layers)}
    out = [list(c) for c in current]
    for gid, n in removed.items():
        if n <= 0:
            continue
        g = graph.group(gid)
        for m in g.members:
            k = index.get(m.param)
            if k is None or m.role not in ("out", "in", "dw"):
                continue
            drop = int(round(n * m.size / g.channels))
            if m.role in ("out", "dw"):
                out[k][1] -= drop
            if m.role == "in" or (m.role == "dw"):
                out[k][0] -= drop
    return [(max(1, a), max(1, b)) for a, b in out]


def grid(c0: int, multiple: int, fractions: Sequence[float], max_points: int = 8) -> list[int]:
    """Channel counts to profile up to ``c0``: every multiple of ``multiple`` when there are at most
    ``max_points``, else the multiples nearest ``c0 x f``; always ``c0`` itself."""
    if c0 <= multiple:
        return [c0]
    if c0 // multiple <= max_points:
        return sorted({*range(multiple, c0 + 1, multiple), c0})
    pts = {c0, multiple}
    for f in fractions:
        pts.add(max(multiple, int(round(c0 * f / multiple)) * multiple))
    return sorted(p for p in pts if 1 <= p <= c0)


def conv_onnx(layer: ConvLayer, cin: int, cout: int, weight: np.ndarray | None, path: str | Path,
              opset: int = 17) -> Path:
    """A one-Conv ONNX file of ``layer`` at ``cin`` -> ``cout`` channels, input at its real size.

    Weights are sliced from ``weight`` (the trained filters, so no denormal artefacts) or drawn at a
    realistic scale when none is given.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    groups = cin if layer.depthwise else layer.groups
    kh, kw = layer.kernel
    if weight is None or weight.shape[0] < cout or weight.shape[1] < cin // groups:
        rng = np.random.default_rng(0)
        w = (rng.standard_normal((cout, cin // groups, kh, kw)) / np.sqrt(cin // groups * kh * kw))
    else:
        w = weight[:cout, : cin // groups]
    w = np.ascontiguousarray(w, dtype=np.float32)
    b = np.zeros(cout, np.float32)
    node = helper.make_node("Conv", ["images", "w", "b"], ["output"], kernel_shape=[kh, kw],
                            strides=list(layer.stride), pads=[*layer.padding, *layer.padding],
                            dilations=list(layer.dilation), group=groups)
    oh = (layer.height + 2 * layer.padding[0] - layer.dilation[0] * (kh - 1) - 1) // layer.stride[0] + 1
    ow = (layer.width + 2 * layer.padding[1] - layer.dilation[1] * (kw - 1) - 1) // layer.stride[1] + 1
    graph = helper.make_graph(
        [node], "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, cin, layer.height, layer.width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, oh, ow])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = min(model.ir_version, 8)  # readable by older runtimes on devices
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def with_channels(layer: ConvLayer, cin: int, cout: int) -> ConvLayer:
    """The same layer at other channel counts (depthwise stays depthwise)."""
    return replace(layer, cin=cin, cout=cout, groups=cin if layer.depthwise else layer.groups)
