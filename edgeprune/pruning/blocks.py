"""Ops on channels split into blocks (see ``edgeprune.pruning.reshapes``), and matmul.

Each handler keeps track of the two dims holding blocks and positions. An op that mixes values
inside a block is exact only when whole blocks are removed; one that mixes values across blocks at
one position only when the same positions are removed from every block (``require``). Anything
else on a split tensor is an unsupported operation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from edgeprune.pruning import shapes
from edgeprune.pruning.recorder import TInfo, Tracer, arg_of, followed, op_name, set_outputs, unknown
from edgeprune.pruning.reshapes import HEADS, POSITIONS, freeze_block, require


def _same(inf: TInfo, o: int, i: int) -> TInfo:
    return TInfo(o, inf.labels, inner=i, block=inf.block)


def passthrough(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Activations, casts, contiguous(): same shape, same blocks."""
    src = args[0] if args else next(iter(kwargs.values()))
    inf = followed(tr, src, out, blocks=True)
    if inf is None or out.shape != src.shape:
        return unknown(tr, func, args, kwargs, out, infos)
    tr.set_info(out, inf)


def permute(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """permute/transpose/movedim: both block dims move with their data."""
    src = args[0]
    inf = tr.info(src)
    order = shapes.permute_order(func, args, kwargs, src.ndim)
    tr.set_info(out, _same(inf, order.index(inf.cdim), order.index(inf.inner)))


def with_dim(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """softmax and the like along one dim: inside blocks needs whole blocks, across needs positions."""
    src = args[0]
    inf = followed(tr, src, out, blocks=True)
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 1) if func is F.normalize else \
        arg_of(args, kwargs, 1, ("dim",))
    if inf is None or dim is None:
        return unknown(tr, func, args, kwargs, out, infos)
    if dim % src.ndim == inf.inner:
        require(tr, inf, HEADS, op_name(func))
    elif dim % src.ndim == inf.cdim:
        require(tr, inf, POSITIONS, op_name(func))
    tr.set_info(out, inf)


def split(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """split/chunk: along the positions (q, k, v of every head) the pieces keep whole blocks."""
    src = args[0]
    inf = followed(tr, src, blocks=True)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    dim = arg_of(args, kwargs, 2, ("dim",), 0) % src.ndim
    if dim not in (inf.cdim, inf.inner):
        return set_outputs(tr, out, inf)
    pieces = list(out)
    bounds = np.cumsum([0] + [p.shape[dim] for p in pieces])
    if dim == inf.inner:
        require(tr, inf, HEADS, f"{op_name(func)} of the positions in each block")
        parts = [inf.labels[:, bounds[k]:bounds[k + 1]] for k in range(len(pieces))]
    else:
        require(tr, inf, POSITIONS, f"{op_name(func)} of the blocks")
        parts = [inf.labels[bounds[k]:bounds[k + 1]] for k in range(len(pieces))]
    for p, lab in zip(pieces, parts):
        tr.set_info(p, TInfo(inf.cdim, lab, inner=inf.inner, block=inf.block))


def getitem(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Basic indexing that keeps both block dims whole."""
    src, index = args[0], args[1]
    inf = followed(tr, src, out, blocks=True)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    dims = []
    for d in (inf.cdim, inf.inner):
        res = shapes.follow_index(src.ndim, d, index)
        if res is None or (res[1] is not None and res[1].indices(src.shape[d]) != (0, src.shape[d], 1)):
            return unknown(tr, func, args, kwargs, out, infos, "indexing a dim of the channel blocks")
        dims.append(res[0])
    tr.set_info(out, _same(inf, dims[0], dims[1]))


def pointwise(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """Elementwise ops: equal block layouts are coupled element by element; a per-block tensor
    (one value per head) needs whole blocks, a per-position one needs positions."""
    if not isinstance(out, torch.Tensor):
        return unknown(tr, func, args, kwargs, out, infos)
    operands = [a for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
    base: tuple[int, int, TInfo] | None = None
    plain: list[tuple[int, np.ndarray]] = []
    consts: list[torch.Tensor] = []
    for t in operands:
        inf, shift = tr.info(t), out.ndim - t.ndim
        if inf is None:
            consts.append(t)
        elif inf.labels is None:
            return unknown(tr, func, args, kwargs, out, infos, "mixes channels with untracked data")
        elif inf.block is None:
            if t.shape[inf.cdim] > 1:
                plain.append((inf.cdim + shift, inf.labels))
        else:
            o, i = inf.cdim + shift, inf.inner + shift
            if t.shape[inf.cdim] != out.shape[o] or t.shape[inf.inner] != out.shape[i]:
                return unknown(tr, func, args, kwargs, out, infos, "broadcasts a dim of the channel blocks")
            if base is None:
                base = (o, i, inf)
            elif (o, i) != base[:2]:
                return unknown(tr, func, args, kwargs, out, infos, "channel blocks of the operands disagree")
            else:
                tr.state.union(base[2].labels.ravel(), inf.labels.ravel())
    if base is None:
        return unknown(tr, func, args, kwargs, out, infos)
    o, i, binf = base
    if not _couple_plain(tr, func, binf, o, i, plain):
        return unknown(tr, func, args, kwargs, out, infos, "channel dims of the operands disagree")
    for t in consts:
        shift = out.ndim - t.ndim
        if any(0 <= d - shift < t.ndim and t.shape[d - shift] > 1 for d in (o, i)):
            freeze_block(tr, binf.block, f"combined with a constant tensor in '{op_name(func)}' ({tr.where})")
    tr.set_info(out, _same(binf, o, i))


def matmul(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """a @ b: channels on batch dims or on the kept rows/columns pass; summing over channels is
    exact only over the positions of whole blocks (attention scores q^T k, per head)."""
    a, b = arg_of(args, kwargs, 0, ("input",)), arg_of(args, kwargs, 1, ("other", "mat2"))
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and isinstance(out, torch.Tensor)) \
            or a.ndim < 2 or b.ndim < 2:
        return unknown(tr, func, args, kwargs, out, infos)
    nd = out.ndim
    flat: list[tuple[int, np.ndarray]] = []  # (output dim, one label per index)
    kept: tuple[int, int, TInfo] | None = None  # a block layout surviving into the output
    for t, first in ((a, True), (b, False)):
        inf = tr.info(t)
        if inf is None:
            continue
        if inf.labels is None:
            return unknown(tr, func, args, kwargs, out, infos, "mixes channels with untracked data")
        role = _roles(t.ndim, nd, first)
        if inf.block is None:
            if role[inf.cdim] is None:
                return unknown(tr, func, args, kwargs, out, infos, "sums over the channel dim")
            flat.append((role[inf.cdim], inf.labels))
            continue
        ro, ri = role[inf.cdim], role[inf.inner]
        if ro is None and ri is None:
            return unknown(tr, func, args, kwargs, out, infos, "sums over both dims of the channel blocks")
        if ri is None:
            require(tr, inf, HEADS, f"{op_name(func)} summing over the positions of each block")
            flat.append((ro, inf.labels[:, 0]))
        elif ro is None:
            require(tr, inf, POSITIONS, f"{op_name(func)} summing over the blocks")
            flat.append((ri, inf.labels[0]))
        elif kept is None:
            kept = (ro, ri, inf)
        else:
            return unknown(tr, func, args, kwargs, out, infos, "both operands carry channel blocks")
    _constant_batches(tr, func, a, b, nd, [p for p, _ in flat] + list(kept[:2] if kept else ()))
    if kept is not None:
        o, i, binf = kept
        if not _couple_plain(tr, func, binf, o, i, flat):
            return unknown(tr, func, args, kwargs, out, infos, "channels on two dims of the result")
        tr.set_info(out, _same(binf, o, i))
        return
    if len({p for p, _ in flat}) != 1 or len({lab.size for _, lab in flat}) != 1:
        return unknown(tr, func, args, kwargs, out, infos, "channels on two dims of the result")
    for _, lab in flat[1:]:
        tr.state.union(flat[0][1], lab)
    tr.set_info(out, TInfo(flat[0][0], flat[0][1]))


def _roles(ndim: int, out_ndim: int, first: bool) -> list[int | None]:
    """Output dim of each operand dim of a matmul; None for the summed dim."""
    shift = out_ndim - ndim
    roles: list[int | None] = [d + shift for d in range(ndim - 2)]
    return roles + ([out_ndim - 2, None] if first else [None, out_ndim - 1])


def _constant_batches(tr: Tracer, func, a: torch.Tensor, b: torch.Tensor, nd: int, dims: list[int]) -> None:
    """A constant operand that differs per channel (along a batch dim) pins those channels."""
    for t in (a, b):
        if tr.info(t) is not None:
            continue
        other = tr.info(b if t is a else a)
        shift = nd - t.ndim
        for p in dims:
            d = p - shift
            if 0 <= d < t.ndim - 2 and t.shape[d] > 1:
                reason = f"multiplied by a constant in '{op_name(func)}' ({tr.where})"
                if other.block is not None:
                    freeze_block(tr, other.block, reason)
                else:
                    tr.state.freeze(other.labels, reason)


def _couple_plain(tr, func, binf, o: int, i: int, plain) -> bool:
    """Couple plain channel labels to a block's heads (on dim ``o``) or positions (on dim ``i``);
    False when a label sits on another dim or has another size."""
    for p, lab in plain:
        if p == o and lab.size == binf.labels.shape[0]:
            require(tr, binf, HEADS, op_name(func))
            tr.state.union(binf.labels[:, 0], lab)
        elif p == i and lab.size == binf.labels.shape[1]:
            require(tr, binf, POSITIONS, op_name(func))
            tr.state.union(binf.labels[0], lab)
        else:
            return False
    return True
