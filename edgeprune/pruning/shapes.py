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
