"""Channel semantics of torch ops, keyed by the torch function objects themselves (no name matching).

A handler receives the tracer, the op, its arguments and result, and sets the ``TInfo`` of the
result. Ops not listed here that touch labelled channels become issues (UnsupportedOperationError
unless the channels only reach a model output or are excluded).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from edgeprune.pruning import blocks, layers, reshapes, shapes
from edgeprune.pruning.recorder import TInfo, Tracer, followed, iter_tensors, op_name, set_outputs, unknown
from edgeprune.pruning.recorder import arg_of as _arg

Handler = Callable[[Tracer, Any, tuple, dict, Any, list], None]
_TABLE: dict[Any, Handler] = {}


def _register(names: list[str], handler: Handler, owners: tuple = (torch, torch.Tensor, F)) -> None:
    for name in names:
        for owner in owners:
            obj = getattr(owner, name, None)
            if obj is not None:
                _TABLE[obj] = handler


def handle(tr: Tracer, func: Any, args: tuple, kwargs: dict, out: Any, infos: list[TInfo]) -> None:
    """Set the channel info of ``out`` for op ``func``."""
    handler = _TABLE.get(func) if _hashable(func) else None
    if handler is None:
        handler = _getter_handler(func)
    if any(i.block is not None for i in infos):  # channels split into blocks by a view
        handler = _BLOCK_HANDLERS.get(handler, unknown)
    if handler is None:
        unknown(tr, func, args, kwargs, out, infos)
    else:
        handler(tr, func, args, kwargs, out, infos)


def _hashable(func: Any) -> bool:
    try:
        hash(func)
    except TypeError:
        return False
    return True


def _getter_handler(func: Any) -> Handler | None:
    # property getters arrive as method-wrappers of getset descriptors (x.data, x.shape, ...)
    owner = getattr(func, "__self__", None)
    if getattr(func, "__name__", "") == "__get__" and getattr(owner, "__name__", "") == "data":
        return first_passthrough
    return None


def escape(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Channel values leave torch (Python numbers, numpy, iteration): results built from them are
    invisible to the tracer, so labelled channels here cannot be pruned safely."""
    tr.issue(op_name(func), infos, "channel values leave torch (item/tolist/numpy/iteration)")


# -- elementwise -----------------------------------------------------------------------------------
def pointwise(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Broadcasting elementwise op: channels at the same output position are coupled."""
    if not isinstance(out, torch.Tensor):
        return unknown(tr, func, args, kwargs, out, infos)
    operands = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    pos: int | None = None
    labelled: list[np.ndarray] = []
    taint: set[int] = set()
    others: list[torch.Tensor] = []
    for t in operands:
        inf = tr.info(t)
        if inf is None:
            others.append(t)
            continue
        if inf.labels is None:
            taint |= inf.taint
            continue
        if t.shape[inf.cdim] == 1 and out.shape[inf.cdim + out.ndim - t.ndim] != 1:
            continue  # a single broadcast channel couples nothing
        p = inf.cdim + out.ndim - t.ndim
        if pos is not None and p != pos:
            return unknown(tr, func, args, kwargs, out, infos, "channel dims of the operands disagree")
        pos = p
        labelled.append(inf.labels)
    if pos is None:
        tr.set_info(out, TInfo(taint=frozenset(taint)) if taint else None)
        return
    if taint:
        return unknown(tr, func, args, kwargs, out, infos, "mixes channels with untracked data")
    base = labelled[0]
    for lab in labelled[1:]:
        tr.state.union(base, lab)
    for t in others:
        d = pos - (out.ndim - t.ndim)
        if 0 <= d < t.ndim and t.shape[d] == base.size and base.size > 1:
            name = tr.state_name(t)
            if name is None or not tr.state.bind(name, d, "param", base):
                tr.state.freeze(base, f"combined with a constant tensor in '{op_name(func)}' ({tr.where})")
    tr.set_info(out, TInfo(pos, base))


def first_passthrough(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Result has the channels of the first tensor argument (activations, pooling, dtype casts)."""
    src = args[0] if args else next(iter(kwargs.values()))
    inf = tr.info(src) if isinstance(src, torch.Tensor) else None
    if inf is None or not isinstance(out, torch.Tensor):
        return unknown(tr, func, args, kwargs, out, infos)
    if inf.labels is not None and (out.ndim != src.ndim or out.shape[inf.cdim] != src.shape[inf.cdim]):
        return unknown(tr, func, args, kwargs, out, infos, "channel count changed")
    tr.set_info(out, inf)


def pad(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """F.pad pads trailing dims; fine unless it reaches the channel dim."""
    src = args[0]
    inf = tr.info(src)
    p = _arg(args, kwargs, 1, ("pad",))
    if inf is not None and inf.labels is not None and inf.cdim >= src.ndim - len(p) // 2:
        return unknown(tr, func, args, kwargs, out, infos, "padding along the channel dim")
    first_passthrough(tr, func, args, kwargs, out, infos)


def with_dim(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Ops acting along one dim (softmax, cumsum, normalize): fine unless that dim is the channel dim."""
    src = args[0]
    inf = tr.info(src)
    dim = _arg(args, kwargs, 1, ("dim",))
    if func in (F.normalize,):
        dim = kwargs.get("dim", args[2] if len(args) > 2 else 1)
    if inf is not None and inf.labels is not None and (dim is None or dim % src.ndim == inf.cdim):
        return unknown(tr, func, args, kwargs, out, infos, "acts along the channel dim")
    first_passthrough(tr, func, args, kwargs, out, infos)


def reduce(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """sum/mean/amax... over dims other than the channel dim keep the channels."""
    src = args[0]
    dim = _arg(args, kwargs, 1, ("dim", "axis"))
    if isinstance(dim, torch.Tensor):  # torch.max(a, b) is elementwise
        return pointwise(tr, func, args, kwargs, out, infos)
    inf = followed(tr, src)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return unknown(tr, func, args, kwargs, out, infos, "reduces over all dims")
    dims = {d % src.ndim for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    if inf.cdim in dims:
        return unknown(tr, func, args, kwargs, out, infos, "reduces over the channel dim")
    keep = next(iter_tensors(out)).ndim == src.ndim
    cdim = inf.cdim if keep else inf.cdim - sum(1 for d in dims if d < inf.cdim)
    set_outputs(tr, out, TInfo(cdim, inf.labels))


# -- shape ops -------------------------------------------------------------------------------------
def permute(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """permute/transpose/movedim: the channel dim moves with its data."""
    src = args[0]
    inf = followed(tr, src)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    order = shapes.permute_order(func, args, kwargs, src.ndim)
    tr.set_info(out, TInfo(order.index(inf.cdim), inf.labels))


def expand(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """expand/expand_as/broadcast_to/repeat: fine while the channel dim is not repeated."""
    src = args[0]
    inf = followed(tr, src, out)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    cdim = inf.cdim + out.ndim - src.ndim
    if out.shape[cdim] != inf.labels.size:
        return unknown(tr, func, args, kwargs, out, infos, "repeats the channel dim")
    tr.set_info(out, TInfo(cdim, inf.labels))


def getitem(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Indexing: slices on other dims pass channels; a slice on the channel dim takes a piece."""
    src, index = args[0], args[1]
    inf = followed(tr, src, out)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    res = shapes.follow_index(src.ndim, inf.cdim, index)
    if res is None:
        return unknown(tr, func, args, kwargs, out, infos, "indexing the channel dim")
    cdim, sl = res
    if sl is None:
        tr.set_info(out, TInfo(cdim, inf.labels))
        return
    layers.channel_slice(tr, func, inf, sl, out, cdim)


def cat(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """cat/stack: along the channel dim channels are concatenated (offsets), else coupled."""
    seq = list(_arg(args, kwargs, 0, ("tensors",)))
    dim = _arg(args, kwargs, 1, ("dim", "axis"), 0)
    stack = func is torch.stack
    nd = seq[0].ndim
    dim = dim % (nd + 1 if stack else nd)
    seq_infos = [tr.info(t) for t in seq]
    cdims = {i.cdim for i in seq_infos if i is not None and i.labels is not None}
    if any(i is not None and i.labels is None for i in seq_infos) or len(cdims) != 1:
        return unknown(tr, func, args, kwargs, out, infos, "inputs with different channel layouts")
    cdim = cdims.pop()
    if not stack and dim == cdim:
        parts = []
        for t, i in zip(seq, seq_infos):
            if i is None:  # a constant inside the concat: its channels exist but can never be removed
                i = TInfo(cdim, tr.state.new_producer(f"const@{tr.where}", t.shape[cdim], "constant input"))
            parts.append(i.labels)
        tr.set_info(out, TInfo(cdim, np.concatenate(parts)))
        return
    if any(i is None for i in seq_infos):
        return unknown(tr, func, args, kwargs, out, infos, "stacks channels with a constant")
    base = seq_infos[0].labels
    for i in seq_infos[1:]:
        tr.state.union(base, i.labels)
    tr.set_info(out, TInfo(cdim + 1 if stack and dim <= cdim else cdim, base))


def split(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """split/chunk/tensor_split: pieces along the channel dim (sizes kept valid, see layers)."""
    src = args[0]
    inf = followed(tr, src)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    dim = _arg(args, kwargs, 2, ("dim",), 0) % src.ndim
    arg = _arg(args, kwargs, 1, ("chunks", "split_size_or_sections", "split_size", "split_sizes",
                                 "indices_or_sections", "sections", "indices"))
    sectioned = func in (torch.tensor_split, torch.Tensor.tensor_split)
    is_chunk = func in (torch.chunk, torch.Tensor.chunk) or (sectioned and isinstance(arg, int))
    if sectioned and not is_chunk and dim == inf.cdim:
        return unknown(tr, func, args, kwargs, out, infos, "tensor_split at literal channel indices")
    if dim != inf.cdim:
        return set_outputs(tr, out, inf)
    layers.channel_split(tr, func, inf, list(out), None if is_chunk else arg)


def unbind(tr: Tracer, func, args, kwargs, out, infos) -> None:
    src = args[0]
    inf = tr.info(src)
    dim = _arg(args, kwargs, 1, ("dim",), 0) % src.ndim
    if inf is None or inf.labels is None or dim == inf.cdim:
        return unknown(tr, func, args, kwargs, out, infos, "unbinds the channel dim")
    cdim = inf.cdim - (1 if dim < inf.cdim else 0)
    for p in out:
        tr.set_info(p, TInfo(cdim, inf.labels))


_UNARY = [
    "abs", "neg", "exp", "log", "sqrt", "rsqrt", "sigmoid", "tanh", "relu", "relu6", "clamp", "clamp_min",
    "clamp_max", "clip", "square", "sin", "cos", "floor", "ceil", "round", "sign", "reciprocal", "erf",
    "logical_not", "isnan", "isfinite", "nan_to_num", "__neg__", "__abs__", "__invert__",
]
_BINARY = [
    "add", "sub", "mul", "div", "true_divide", "floor_divide", "remainder", "fmod", "pow", "maximum",
    "minimum", "where", "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "bitwise_and",
    "bitwise_or", "lerp", "addcmul", "addcdiv", "sub", "rsub", "masked_fill",
]
_DUNDER = [
    "__add__", "__radd__", "__iadd__", "__sub__", "__rsub__", "__isub__", "__mul__", "__rmul__",
    "__imul__", "__truediv__", "__rtruediv__", "__itruediv__", "__div__", "__rdiv__", "__idiv__",
    "__pow__", "__rpow__", "__ipow__", "__floordiv__", "__rfloordiv__", "__mod__", "__and__", "__or__",
    "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
]
_ACT = [
    "relu", "relu6", "silu", "sigmoid", "hardsigmoid", "hardswish", "tanh", "hardtanh", "gelu", "mish",
    "elu", "selu", "celu", "softplus", "softsign", "leaky_relu", "logsigmoid", "tanhshrink", "threshold",
    "rrelu", "dropout", "dropout1d", "dropout2d", "dropout3d", "alpha_dropout",
    "feature_alpha_dropout", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d",
    "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "lp_pool2d", "interpolate",
    "upsample", "upsample_nearest", "upsample_bilinear", "grid_sample", "max_pool2d_with_indices",
    "contiguous", "clone", "detach", "float", "half", "double", "bfloat16", "to", "type", "type_as",
    "cpu", "cuda", "requires_grad_", "identity",
]


def _register_all() -> None:
    _register(_UNARY + _BINARY, pointwise)
    _register([n + "_" for n in _UNARY + _BINARY], pointwise, owners=(torch, torch.Tensor))
    _register(_DUNDER, pointwise, owners=(torch.Tensor,))
    _register(_ACT, first_passthrough, owners=(F, torch.Tensor))
    _register([n + "_" for n in _ACT], first_passthrough, owners=(F, torch, torch.Tensor))
    _register(["relu", "sigmoid", "tanh", "dropout", "clone", "detach"], first_passthrough, owners=(torch,))
    _register(["pad"], pad, owners=(F,))
    _register(["softmax", "log_softmax", "cumsum", "cumprod", "normalize", "softmin"], with_dim)
    _register(["sum", "mean", "amax", "amin", "max", "min", "std", "var", "prod", "logsumexp"], reduce,
              owners=(torch, torch.Tensor))
    _register(["view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as",
               "squeeze_", "unsqueeze_"], reshapes.reshape, owners=(torch, torch.Tensor))
    _register(["matmul", "bmm", "__matmul__"], blocks.matmul, owners=(torch, torch.Tensor))
    _register(["permute", "transpose", "swapaxes", "movedim"], permute, owners=(torch, torch.Tensor))
    _register(["expand", "expand_as", "broadcast_to"], expand, owners=(torch, torch.Tensor))
    _register(["__getitem__"], getitem, owners=(torch.Tensor,))
    _register(["item", "tolist", "numpy", "__iter__", "__array__", "__bool__", "__float__", "__int__",
               "__index__"], escape, owners=(torch.Tensor,))
    _register(["cat", "concat", "concatenate", "stack"], cat, owners=(torch,))
    _register(["split", "chunk", "split_with_sizes", "tensor_split"], split, owners=(torch, torch.Tensor))
    _register(["unbind"], unbind, owners=(torch, torch.Tensor))
    _register(["conv1d", "conv2d", "conv3d"], layers.conv, owners=(torch, F))
    _register(["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"], layers.conv_transpose,
              owners=(torch, F))
    _register(["linear"], layers.linear, owners=(F,))
    _register(["batch_norm"], layers.batch_norm, owners=(F,))
    _register(["prelu"], layers.prelu, owners=(F,))
    _register(["layer_norm"], layers.layer_norm, owners=(F, torch))
    _register(["group_norm"], layers.group_norm, owners=(F, torch))


_register_all()
# ops that understand channels split into blocks, by the handler of the same op on plain channels
_BLOCK_HANDLERS: dict[Any, Handler] = {
    first_passthrough: blocks.passthrough, pointwise: blocks.pointwise, permute: blocks.permute,
    with_dim: blocks.with_dim, split: blocks.split, getitem: blocks.getitem,
    reshapes.reshape: reshapes.reshape, blocks.matmul: blocks.matmul,
}
