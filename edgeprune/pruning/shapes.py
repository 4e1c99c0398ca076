"""Pure shape logic: where the channel dim goes through a reshape or an index expression."""

from __future__ import annotations

import math
from typing import Any

import torch


def follow_reshape(in_shape: tuple[int, ...], cdim: int,
                   out_shape: tuple[int, ...]) -> tuple[int, int] | None:
    """(new channel dim, repeat) when a contiguous reshape keeps each channel a whole block, else None.

    ``repeat > 1`` means the channel dim was merged with following dims (flatten before a Linear):
    each channel then spans ``repeat`` consecutive entries of the new dim.
    """
    prefix = math.prod(in_shape[:cdim])
    c = in_shape[cdim]
    rest = math.prod(in_shape[cdim + 1:])
    pp = 1
    for d, n in enumerate(out_shape):
        if pp == prefix:
            if n == c:
                return d, 1
            if c > 0 and n % c == 0 and rest % (n // c) == 0 and n > c:
                return d, n // c
        elif pp > prefix:
            return None
        pp *= n
    return None


def follow_index(ndim: int, cdim: int, index: Any) -> tuple[int, slice | None] | None:
    """(new channel dim, slice applied to it or None) for basic indexing; None if the channel dim
    is indexed by an int or by advanced indexing (tensors, lists, masks)."""
    items = index if isinstance(index, tuple) else (index,)
    if any(isinstance(i, (torch.Tensor, list, bool)) for i in items):
        return None
    consuming = sum(1 for i in items if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for i in items:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (ndim - consuming))
        else:
            expanded.append(i)
    in_dim = out_dim = 0
    for i in expanded:
        if i is None:
            out_dim += 1
            continue
        if isinstance(i, slice):
            if in_dim == cdim:
                return out_dim, i
            in_dim += 1
            out_dim += 1
            continue
        if in_dim == cdim:  # an int picks one channel
            return None
        in_dim += 1
    return out_dim + (cdim - in_dim), None


Chunks = list[tuple[list[int], list[int]]]


def reshape_chunks(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> Chunks | None:
    """Minimal groups of input dims and output dims with equal products (a contiguous reshape maps
    each group onto the other); size-1 dims form groups of their own. None for empty tensors."""
    if 0 in in_shape or 0 in out_shape:
        return None
    chunks: Chunks = []
    i = j = 0
    while i < len(in_shape) or j < len(out_shape):
        if i < len(in_shape) and in_shape[i] == 1:
            chunks.append(([i], []))
            i += 1
            continue
        if j < len(out_shape) and out_shape[j] == 1:
            chunks.append(([], [j]))
            j += 1
            continue
        if i >= len(in_shape) or j >= len(out_shape):
            return None
        ins, outs = [i], [j]
        pi, pj = in_shape[i], out_shape[j]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                if i >= len(in_shape):
                    return None
                pi *= in_shape[i]
                ins.append(i)
                i += 1
            else:
                if j >= len(out_shape):
                    return None
                pj *= out_shape[j]
                outs.append(j)
                j += 1
        chunks.append((ins, outs))
    return chunks


def chunk_of(chunks: Chunks, dim: int,
             shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """The group holding input ``dim``, without its size-1 dims."""
    for ins, outs in chunks:
        if dim in ins:
            return [d for d in ins if shape[d] != 1], [d for d in outs if out_shape[d] != 1]
    raise ValueError(dim)


def permute_order(func: Any, args: tuple, kwargs: dict, nd: int) -> list[int]:
    """Input dim of every output dim for permute/transpose/swapaxes/movedim."""
    name = getattr(func, "__name__", "")
    if name in ("transpose", "swapaxes", "transpose_", "swapaxes_", "swapdims"):
        a = args[1] if len(args) > 1 else kwargs.get("dim0", kwargs.get("axis0"))
        b = args[2] if len(args) > 2 else kwargs.get("dim1", kwargs.get("axis1"))
        order = list(range(nd))
        order[a % nd], order[b % nd] = order[b % nd], order[a % nd]
        return order
    if name == "movedim":
        src = args[1] if len(args) > 1 else kwargs["source"]
        dst = args[2] if len(args) > 2 else kwargs["destination"]
        src = [s % nd for s in (src if isinstance(src, (list, tuple)) else [src])]
        dst = [d % nd for d in (dst if isinstance(dst, (list, tuple)) else [dst])]
        order = [-1] * nd
        for s, d in zip(src, dst):
            order[d] = s
        rest = iter(d for d in range(nd) if d not in src)
        return [o if o >= 0 else next(rest) for o in order]
    rest = args[1:] or tuple(kwargs.get("dims", ()))
    order = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else list(rest)
    return [d % nd for d in order]


class ChannelCount(int):
    """A channel count read from a tensor's shape while tracing. ``sources`` are the label arrays it
    counts; arithmetic with other ints keeps them, so ``x.shape[1] // groups`` is still known to
    follow ``x``'s channels when it reaches a ``view``."""

    sources: tuple

    def __new__(cls, value: int, sources: tuple) -> ChannelCount:
        obj = super().__new__(cls, value)
        obj.sources = tuple(sources)
        return obj

    def __reduce__(self):  # copies and pickles are plain ints
        return (int, (int(self),))


def _derived(op, reflected: bool):
    def method(self: ChannelCount, other: Any) -> Any:
        if not isinstance(other, int) or isinstance(other, bool):
            return NotImplemented
        a, b = (int(other), int(self)) if reflected else (int(self), int(other))
        result = op(a, b)
        extra = other.sources if isinstance(other, ChannelCount) else ()
        return ChannelCount(result, self.sources + extra) if isinstance(result, int) else result

    return method


def _install() -> None:
    import operator

    for name, op in (("add", operator.add), ("sub", operator.sub), ("mul", operator.mul),
                     ("floordiv", operator.floordiv)):
        setattr(ChannelCount, f"__{name}__", _derived(op, False))
        setattr(ChannelCount, f"__r{name}__", _derived(op, True))


_install()
