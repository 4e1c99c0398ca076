"""Channels through view/reshape: kept whole, flattened, split into blocks, or merged back.

A view that splits C channels into ``g`` blocks of ``d`` (heads x head_dim, groups x channels per
group) stays valid after pruning only if one of its two sizes follows the channel count:
- *heads*: whole blocks are removed; the block count must follow (``-1``, read from the tensor's
  shape, or a module attribute such as ``num_heads`` that is then updated);
- *positions*: the same positions are removed from every block; the block size must follow
  (``-1`` or ``x.shape[1] // groups`` as in a channel shuffle, or a module attribute).
The mode is read from the view's size arguments; ops on the split tensor that would need the other
coupling freeze those channels (see ``edgeprune.pruning.blocks``). A channel count read from a
*different* tensor's shape ties the two channel counts together: both are frozen, since removing
channels from one would break the view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from edgeprune.pruning import shapes
from edgeprune.pruning.recorder import TInfo, Tracer, followed, op_name, unknown
from edgeprune.pruning.size_attrs import find_size_attr
from edgeprune.pruning.state import SizeAttr

HEADS, POSITIONS, FROZEN = "heads", "positions", "frozen"
ADAPT, FIXED, FOREIGN = "adapt", "fixed", "foreign"


@dataclass
class Block:
    """One view that split channels into blocks; shared by every tensor derived from it.

    While ``mode`` is "" both couplings in ``options`` are possible (each with the module
    attributes it would update); the first op that needs one decides, else ``finalize`` does."""

    mode: str  # "", HEADS, POSITIONS or FROZEN
    where: str
    labels: np.ndarray  # (blocks, positions) as split
    options: dict[str, list[SizeAttr]]

    def decide(self, tr: Tracer, mode: str) -> None:
        """Couple the channels for ``mode`` and record the attributes it updates."""
        self.mode = mode
        grid = self.labels
        if mode == HEADS:
            for j in range(1, grid.shape[1]):
                tr.state.union(grid[:, 0], grid[:, j])
        else:
            for i in range(1, grid.shape[0]):
                tr.state.union(grid[0], grid[i])
        tr.state.size_attrs.extend(self.options[mode])

    def finalize(self, tr: Tracer) -> None:
        """No op needed either coupling: take the one that updates no attribute (heads on a tie)."""
        if not self.mode:
            self.decide(tr, min(self.options, key=lambda m: (len(self.options[m]), m != HEADS)))


def freeze_block(tr: Tracer, block: Block, reason: str) -> None:
    """Never prune the channels of this split (an understood pattern that cannot be pruned)."""
    if block.mode != FROZEN:
        tr.state.freeze(block.labels, reason)
        block.mode = FROZEN


def require(tr: Tracer, inf: TInfo, mode: str, what: str) -> None:
    """An op needs this coupling of the split (``HEADS``: it mixes values inside a block;
    ``POSITIONS``: across blocks); freeze the split's channels if it has the other one."""
    block = inf.block
    if not block.mode and mode in block.options:
        block.decide(tr, mode)
    if block.mode in (FROZEN, mode):
        return
    mixes = "inside each block" if mode == HEADS else "across blocks"
    removes = {HEADS: "whole blocks", POSITIONS: "the same positions from every block"}.get(
        block.mode, "blocks whose sizes cannot follow that")
    freeze_block(tr, block, f"{what} in '{tr.where or 'model'}' mixes values {mixes} of the channel split "
                            f"in '{block.where or 'model'}', which removes {removes}")


def size_args(tr: Tracer, func: Any, args: tuple, kwargs: dict, src: torch.Tensor,
              out: torch.Tensor) -> list[Any]:
    """The size argument given for each output dim; None where the op derives it from the input."""
    name = getattr(func, "__name__", "")
    nd = out.ndim
    if name in ("view", "reshape"):
        rest = tuple(args[1:]) or (kwargs.get("shape", kwargs.get("size")),)
        if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
            rest = tuple(rest[0])
        if len(rest) != nd or not all(isinstance(r, int) for r in rest):
            return [None] * nd  # view(dtype) and the like keep every size
        return list(rest)
    if name == "unflatten":
        dim = (args[1] if len(args) > 1 else kwargs["dim"]) % src.ndim
        sizes = list(args[2] if len(args) > 2 else kwargs["sizes"])
        return [None] * dim + sizes + [None] * (src.ndim - dim - 1)
    if name in ("view_as", "reshape_as"):
        other = args[1] if len(args) > 1 else kwargs["other"]
        inf = tr.info(other)
        sizes = list(other.shape)
        if inf is not None and inf.labels is not None and inf.block is None:
            sizes[inf.cdim] = shapes.ChannelCount(sizes[inf.cdim], (inf.labels,))
        return sizes
    return [None] * nd


def _kind(tr: Tracer, arg: Any, own: np.ndarray) -> str:
    if arg is None or (type(arg) is int and arg == -1):
        return ADAPT
    if isinstance(arg, shapes.ChannelCount):
        return ADAPT if tr.same_channels(arg.sources, own) else FOREIGN
    return FIXED


def _tie(tr: Tracer, name: str, arg: shapes.ChannelCount, own: np.ndarray, block: Block | None) -> None:
    reason = (f"{name}() in '{tr.where or 'model'}' sizes these channels with the channel count of "
              "another tensor (read from its shape), so the two counts must stay equal")
    if block is not None:
        freeze_block(tr, block, reason)
    tr.state.freeze(own, reason)
    for src in arg.sources:
        tr.state.freeze(src, reason)


def _attr_of(tr: Tracer, value: Any, pieces: list[np.ndarray]) -> SizeAttr | None:
    """The module attribute holding ``value``, as a size to update after pruning."""
    found = find_size_attr(tr, value) if isinstance(value, int) else "not an int"
    return None if isinstance(found, str) else SizeAttr(found[0], found[1], "int", int(value), pieces)


def _attr(tr: Tracer, value: Any, pieces: list[np.ndarray]) -> bool:
    """Record the module attribute holding ``value`` as a size to update after pruning."""
    attr = _attr_of(tr, value, pieces)
    if attr is not None:
        tr.state.size_attrs.append(attr)
    return attr is not None


def _fixed_reason(name: str, tr: Tracer, value: Any, what: str) -> str:
    return (f"{name}() gives {what} as the fixed number {value}, which no module attribute holds; pass -1 or "
            "a size read from the tensor's shape to let it be pruned")


def reshape(tr: Tracer, func, args, kwargs, out, infos) -> None:
    """view/reshape/flatten/unflatten/squeeze/unsqueeze on plain or block-split channels."""
    src = args[0]
    inf = followed(tr, src, out)
    if inf is None:
        return unknown(tr, func, args, kwargs, out, infos)
    sizes = size_args(tr, func, args, kwargs, src, out)
    in_shape, out_shape = tuple(src.shape), tuple(out.shape)
    chunks = shapes.reshape_chunks(in_shape, out_shape)
    detail = f"{op_name(func)} {in_shape} -> {out_shape} mixes the channel dim with other dims"
    if inf.block is not None:
        return _reshape_block(tr, func, args, kwargs, out, infos, sizes, chunks, detail)
    if chunks is None or in_shape[inf.cdim] == 1:
        res = shapes.follow_reshape(in_shape, inf.cdim, out_shape)
        if res is None:
            return unknown(tr, func, args, kwargs, out, infos, detail)
        cdim, repeat = res
        tr.set_info(out, TInfo(cdim, np.repeat(inf.labels, repeat) if repeat > 1 else inf.labels))
        return
    name = getattr(func, "__name__", "view")
    ins, outs = shapes.chunk_of(chunks, inf.cdim, in_shape, out_shape)
    if ins == [inf.cdim] and len(outs) == 1:
        why = _check_count(tr, name, sizes[outs[0]], inf.labels, None, [inf.labels], "the channel count")
        if why:
            return unknown(tr, func, args, kwargs, out, infos, why)
        tr.set_info(out, TInfo(outs[0], inf.labels))
    elif ins == [inf.cdim] and len(outs) == 2:
        why = split_blocks(tr, name, inf.labels, out, outs[0], outs[1], sizes)
        if why:
            unknown(tr, func, args, kwargs, out, infos, why)
    elif ins[0] == inf.cdim and len(outs) == 1:  # channel dim merged with the dims after it
        why = _check_count(tr, name, sizes[outs[0]], inf.labels, None, [], "the flattened channel count")
        if why:
            return unknown(tr, func, args, kwargs, out, infos, why)
        repeat = math.prod(in_shape[d] for d in ins[1:])
        tr.set_info(out, TInfo(outs[0], np.repeat(inf.labels, repeat)))
    else:
        unknown(tr, func, args, kwargs, out, infos, detail)


def _check_count(tr: Tracer, name: str, arg: Any, own: np.ndarray, block: Block | None,
                 pieces: list[np.ndarray], what: str) -> str:
    """A size argument that must follow the channels ``own`` after pruning; returns why it cannot
    (a fixed number no module attribute holds), or "" when it can or the channels are frozen."""
    kind = _kind(tr, arg, own)
    if kind == FOREIGN:
        _tie(tr, name, arg, own, block)
    elif kind == FIXED and not (block is not None and block.mode == FROZEN) \
            and not (pieces and _attr(tr, arg, pieces)):
        return _fixed_reason(name, tr, arg, what)
    return ""


def split_blocks(tr: Tracer, name: str, labels: np.ndarray, out: torch.Tensor, outer: int, inner: int,
                 sizes: list[Any]) -> str:
    """A view splitting channels into (blocks, positions): choose the coupling its sizes allow;
    returns why neither can follow pruning (both sizes fixed numbers), else ""."""
    g, d = out.shape[outer], out.shape[inner]
    grid = labels.reshape(g, d)
    ko, ki = _kind(tr, sizes[outer], labels), _kind(tr, sizes[inner], labels)
    block = Block("", tr.where, grid, {})
    if FOREIGN in (ko, ki):
        _tie(tr, name, sizes[outer] if ko == FOREIGN else sizes[inner], labels, block)
    else:
        # heads: the block count follows (-1, a shape read, or an attribute updated) at a fixed size;
        # positions: the block size follows at a fixed count
        if ko == ADAPT and ki == FIXED:
            block.options[HEADS] = []
        elif ko == FIXED and (attr := _attr_of(tr, sizes[outer], [grid[:, 0]])) is not None:
            block.options[HEADS] = [attr]
        if ki == ADAPT:
            block.options[POSITIONS] = []
        elif ki == FIXED and (attr := _attr_of(tr, sizes[inner], [grid[0]])) is not None:
            block.options[POSITIONS] = [attr]
        if not block.options:
            return (f"{name}() splits {labels.size} channels into {g} x {d} blocks given as fixed numbers, "
                    "so neither the block count nor the block size can follow pruning (pass -1, a size read "
                    "from the tensor's shape, or a module attribute)")
        if len(block.options) == 1:
            block.decide(tr, next(iter(block.options)))
        else:
            tr.blocks.append(block)
    tr.set_info(out, TInfo(outer, grid, inner=inner, block=block))
    return ""


def _reshape_block(tr: Tracer, func, args, kwargs, out, infos, sizes, chunks, detail) -> None:
    inf = tr.info(args[0])
    src = args[0]
    if chunks is None:
        return unknown(tr, func, args, kwargs, out, infos, detail)
    o, i, grid, block = inf.cdim, inf.inner, inf.labels, inf.block
    block.finalize(tr)  # a reshape keeping both block dims checks the size that follows
    name = getattr(func, "__name__", "view")
    in_o, out_o = shapes.chunk_of(chunks, o, tuple(src.shape), tuple(out.shape))
    in_i, out_i = shapes.chunk_of(chunks, i, tuple(src.shape), tuple(out.shape))
    if in_o == in_i == sorted((o, i)) and abs(o - i) == 1 and len(out_o) == 1:  # merge back
        merged = (grid if o < i else grid.T).reshape(-1)
        why = _check_count(tr, name, sizes[out_o[0]], merged, block, [], "the merged channel count")
        if why:
            return unknown(tr, func, args, kwargs, out, infos, why)
        tr.set_info(out, TInfo(out_o[0], merged))
        return
    if in_o == [o] and in_i == [i] and len(out_o) == 1 and len(out_i) == 1:  # both dims kept
        why = ""
        if block.mode == HEADS:
            why = _check_count(tr, name, sizes[out_o[0]], grid[:, 0], block, [grid[:, 0]], "the block count")
        elif block.mode == POSITIONS:
            why = _check_count(tr, name, sizes[out_i[0]], grid[0], block, [grid[0]], "the block size")
        if why:
            return unknown(tr, func, args, kwargs, out, infos, why)
        tr.set_info(out, TInfo(out_o[0], grid, inner=out_i[0], block=block))
        return
    unknown(tr, func, args, kwargs, out, infos, detail)
