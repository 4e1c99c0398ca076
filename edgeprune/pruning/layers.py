"""Channel semantics of layers (conv, linear, batch norm) and of channel slicing / splitting."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from edgeprune.pruning.recorder import TInfo, Tracer, op_name
from edgeprune.pruning.size_attrs import find_size_attr
from edgeprune.pruning.state import SizeAttr


def _get(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _module_of(param: str) -> str:
    return param.rsplit(".", 1)[0] if "." in param else ""


def _input_labels(tr: Tracer, func, x: torch.Tensor, cdim: int) -> np.ndarray | None:
    """Labels of ``x`` when its channels sit at ``cdim``; records an issue when they do not."""
    inf = tr.info(x)
    if inf is None or inf.labels is None:
        return None
    if inf.cdim != cdim % x.ndim:
        tr.issue(op_name(func), [inf], "channels are not on the dim this layer reads")
        return None
    return inf.labels


def _channel_labels(tr: Tracer, func, x: torch.Tensor, out: torch.Tensor) -> np.ndarray | None:
    """Labels of a per-channel layer's input (channels at dim 1); without them the output keeps
    only the input's taint and None is returned."""
    labels = _input_labels(tr, func, x, 1)
    if labels is None:
        inf = tr.info(x)
        tr.set_info(out, TInfo(taint=inf.taint) if inf is not None else None)
    return labels


def _bind_affine(tr: Tracer, args: tuple, kwargs: dict, dim: int, labels: np.ndarray) -> None:
    """Weight and bias (arguments 2 and 3) of a norm layer follow ``labels`` along ``dim``."""
    for i, name in ((2, "weight"), (3, "bias")):
        t = _get(args, kwargs, i, name)
        sname = tr.state_name(t) if isinstance(t, torch.Tensor) else None
        if sname is not None:
            tr.state.bind(sname, dim, "param", labels)


def _computed_weight(tr: Tracer, func, x: torch.Tensor, out: torch.Tensor, n_out: int, cdim: int) -> None:
    inf = tr.info(x)
    if inf is not None:
        tr.issue(op_name(func), [inf], "weight is computed in forward, not a parameter")
    labels = tr.state.new_producer(f"computed@{tr.where}", n_out, frozen="weight computed in forward")
    tr.set_info(out, TInfo(cdim, labels))


def _out_channels(w: torch.Tensor, transposed: bool, groups: int) -> int:
    # weight [out, in/groups, k...] or, transposed, [in, out/groups, k...]; linear's is [out, in]
    return w.shape[1] * groups if transposed else w.shape[0]


def _weighted(tr: Tracer, func, args: tuple, kwargs: dict, out: torch.Tensor, cdim: int,
              transposed: bool = False, groups: int = 1) -> tuple[Any, str, Any, np.ndarray | None] | None:
    """(weight, its parameter name, bias, input labels) of a conv or linear call whose channels sit
    at ``cdim``; None when the weight is computed in forward (its output channels are then frozen)."""
    x, w, b = args[0], _get(args, kwargs, 1, "weight"), _get(args, kwargs, 2, "bias")
    wname = tr.state_name(w)
    if wname is None:
        _computed_weight(tr, func, x, out, _out_channels(w, transposed, groups), cdim % out.ndim)
        return None
    return w, wname, b, _input_labels(tr, func, x, cdim)


def conv(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """conv1d/2d/3d: input channels are consumed, output channels created (depthwise: coupled)."""
    _conv(tr, func, args, kwargs, out, transposed=False)


def conv_transpose(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """conv_transpose1d/2d/3d: the same, with the weight laid out [in, out/groups, k...]."""
    _conv(tr, func, args, kwargs, out, transposed=True)


def _conv(tr: Tracer, func, args: tuple, kwargs: dict, out: torch.Tensor, transposed: bool) -> None:
    """Plain convolutions prune input and output channels; a grouped one mixes channels inside
    each group, so its channels are kept, except a depthwise conv whose channels pass through."""
    groups = _get(args, kwargs, 6, "groups", 1)
    found = _weighted(tr, func, args, kwargs, out, 1, transposed, groups)
    if found is None:
        return
    w, wname, b, labels = found
    mod_name = _module_of(wname)
    kind = "transposed convolution" if transposed else "convolution"
    out_dim, n_out = (1 if transposed else 0), _out_channels(w, transposed, groups)
    module = tr.modules.get(mod_name)
    depthwise = (not transposed and groups > 1 and groups == w.shape[1] * groups == n_out
                 and isinstance(module, nn.modules.conv._ConvNd) and module.groups == groups)
    if depthwise and labels is not None:
        tr.state.bind(wname, 0, "dw", labels)
        out_labels = labels
    else:
        out_labels = tr.state.produce(wname, out_dim, "out", n_out, mod_name)
        if labels is not None:
            if groups == 1:
                tr.state.bind(wname, 1 - out_dim, "in", labels)
            else:
                tr.state.freeze(labels, f"input of grouped {kind} '{mod_name}'")
        if groups > 1:
            tr.state.freeze(out_labels, f"grouped {kind} '{mod_name}'")
    _bind_bias(tr, b, out_labels)
    tr.set_info(out, TInfo(1, out_labels))


def linear(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """linear: reads the last dim (after a flatten each channel spans H*W columns)."""
    found = _weighted(tr, func, args, kwargs, out, -1)
    if found is None:
        return
    w, wname, b, labels = found
    if labels is not None:
        tr.state.bind(wname, 1, "in", labels)
    out_labels = tr.state.produce(wname, 0, "out", w.shape[0], _module_of(wname))
    _bind_bias(tr, b, out_labels)
    tr.set_info(out, TInfo(out.ndim - 1, out_labels))


def batch_norm(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """batch_norm: per-channel stats and affine parameters follow the input channels."""
    x = args[0]
    labels = _channel_labels(tr, func, x, out)
    if labels is None:
        return
    for i, (name, role) in enumerate((("running_mean", "bn_stat"), ("running_var", "bn_stat"),
                                      ("weight", "bn_weight"), ("bias", "bn_bias"))):
        t = _get(args, kwargs, i + 1, name)
        if isinstance(t, torch.Tensor):
            sname = tr.state_name(t)
            if sname is None or not tr.state.bind(sname, 0, role, labels):
                tr.state.freeze(labels, f"batch norm with computed '{name}' ({tr.where})")
    tr.set_info(out, TInfo(1, labels))


def prelu(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """prelu: a per-channel slope parameter (or one shared slope)."""
    x, w = args[0], _get(args, kwargs, 1, "weight")
    labels = _channel_labels(tr, func, x, out)
    if labels is None:
        return
    if w.numel() == labels.size and labels.size > 1:
        sname = tr.state_name(w)
        if sname is None or not tr.state.bind(sname, 0, "param", labels):
            tr.state.freeze(labels, f"prelu with a computed weight ({tr.where})")
    tr.set_info(out, TInfo(1, labels))


def layer_norm(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """layer_norm over the last dims: when they include the channel dim (channels-last LayerNorm,
    LayerNorm2d), removing a channel changes every other channel's statistics, so those channels
    are never pruned; its weight and bias follow them. Over other dims it is per channel."""
    x, shape = args[0], _get(args, kwargs, 1, "normalized_shape")
    inf = tr.info(x)
    if inf is None or inf.labels is None or inf.block is not None:
        tr.issue(op_name(func), infos, "normalizes channels that are not on one tensor dim")
        tr.set_info(out, TInfo(taint=frozenset(set().union(*(tr.producers(i) for i in infos)))))
        return
    first = x.ndim - len(shape)
    if inf.cdim >= first:
        tr.state.freeze(inf.labels, f"layer norm '{tr.where or 'model'}' normalizes across these channels "
                                    "(removing one changes all the others)")
        _bind_affine(tr, args, kwargs, inf.cdim - first, inf.labels)
    tr.set_info(out, TInfo(inf.cdim, inf.labels))


def group_norm(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """group_norm normalizes across the channels of each group: they are never pruned."""
    x = args[0]
    labels = _channel_labels(tr, func, x, out)
    if labels is None:
        return
    tr.state.freeze(labels, f"group norm '{tr.where or 'model'}' normalizes across groups of these channels")
    _bind_affine(tr, args, kwargs, 0, labels)
    tr.set_info(out, TInfo(1, labels))


def _bind_bias(tr: Tracer, b: Any, labels: np.ndarray) -> None:
    if isinstance(b, torch.Tensor):
        name = tr.state_name(b)
        if name is None or not tr.state.bind(name, 0, "out_bias", labels):
            tr.state.freeze(labels, f"computed bias ({tr.where})")


# -- slicing and splitting along the channel dim ---------------------------------------------------
def channel_slice(tr: Tracer, func, inf: TInfo, sl: slice, out: torch.Tensor, cdim: int) -> None:
    """x[:, a:b]: the piece keeps its labels; explicit bounds must live in a module attribute."""
    c = inf.labels.size
    start, stop, step = sl.indices(c)
    if step != 1:
        tr.issue(op_name(func), [inf], "strided slice of the channel dim")
    for bound in (sl.start, sl.stop):
        if bound is not None and not isinstance(bound, int):
            tr.issue(op_name(func), [inf], "slice bound is not a Python int")
            continue
        if bound is None or bound == 0 or (bound >= c and bound is sl.stop):
            continue
        found = find_size_attr(tr, bound) if bound > 0 else "negative slice bound"
        if isinstance(found, str):
            tr.issue(op_name(func), [inf], found)
        else:
            tr.state.size_attrs.append(SizeAttr(found[0], found[1], "int", bound, [inf.labels[:bound]]))
    tr.set_info(out, TInfo(cdim, inf.labels[start:stop:step] if step > 0 else inf.labels[:0]))


def channel_split(tr: Tracer, func, inf: TInfo, pieces: list[torch.Tensor], arg: Any) -> None:
    """split/chunk along channels. Equal pieces whose size is one number get coupled, so every piece
    loses the same count; the number is updated in its module attribute (chunk needs none)."""
    sizes = [p.shape[inf.cdim] for p in pieces]
    bounds = np.cumsum([0] + sizes)
    parts = [inf.labels[bounds[i]:bounds[i + 1]] for i in range(len(pieces))]
    for p, lab in zip(pieces, parts):
        tr.set_info(p, TInfo(inf.cdim, lab))
    if len(pieces) <= 1:
        return
    name = op_name(func)
    if isinstance(arg, torch.Tensor):
        tr.issue(name, [inf], "split sizes given as a tensor")
        return
    if arg is None or isinstance(arg, int):  # chunk(n) or split(size)
        if len(set(sizes)) != 1:
            tr.issue(name, [inf], f"unequal pieces {sizes}")
            return
        for lab in parts[1:]:
            tr.state.union(parts[0], lab)
        if arg is not None:
            _size_attr(tr, name, inf, arg, "int", [parts[0]])
        return
    seq = [int(s) for s in arg]
    found = find_size_attr(tr, arg)
    if not isinstance(found, str):
        tr.state.size_attrs.append(SizeAttr(found[0], found[1], "seq", arg, parts))
        return
    for value in sorted(set(seq)):
        same = [lab for s, lab in zip(seq, parts) if s == value]
        for lab in same[1:]:
            tr.state.union(same[0], lab)
        _size_attr(tr, name, inf, value, "int", [same[0]])


def _size_attr(tr: Tracer, name: str, inf: TInfo, value: Any, kind: str, pieces: list[np.ndarray]) -> None:
    found = find_size_attr(tr, value)
    if isinstance(found, str):
        tr.issue(name, [inf], found)
    else:
        tr.state.size_attrs.append(SizeAttr(found[0], found[1], kind, value, pieces))
