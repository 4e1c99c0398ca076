"""The recorder of one traced forward pass: channel information per tensor, and the
``TorchFunctionMode`` that hands every op touching labelled channels to a handler.

A ``TorchFunctionMode`` sees every functional op and tensor method; module hooks keep a stack of
the module paths being executed (for error messages and split-size attributes). Each live tensor is
mapped (by identity, checked with a weak reference) to a ``TInfo``: which of its dims carries
channels and which element each channel is, or, after an op edgeprune does not understand, the set of
producers whose channels went into it ("taint"). The handlers live in ``edgeprune.pruning.ops``;
they are passed in, so this module imports none of them.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from edgeprune.pruning.shapes import ChannelCount
from edgeprune.pruning.state import Issue, TraceState

_SIZE = torch.Tensor.size
_SHAPE = torch._C.TensorBase.__dict__["shape"]


class TInfo:
    """Channel information of one tensor: labelled channel dim, or taint (producer ids).

    After a view split the channels into blocks (heads x head_dim, groups x channels-per-group),
    ``block`` describes the split, ``cdim`` is the dim indexing blocks, ``inner`` the dim indexing
    positions inside a block, and ``labels`` is 2-D: ``labels[block, position]``.
    """

    __slots__ = ("cdim", "labels", "taint", "inner", "block")

    def __init__(self, cdim: int | None = None, labels: np.ndarray | None = None,
                 taint: frozenset[int] = frozenset(), inner: int | None = None, block: Any = None) -> None:
        self.cdim = cdim
        self.labels = labels
        self.taint = taint
        self.inner = inner
        self.block = block


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Tensors inside nested lists/tuples/dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from iter_tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from iter_tensors(o)


class Tracer(TorchFunctionMode):
    """Function mode dispatching each op to a channel handler (see ``edgeprune.pruning.ops``)."""

    def __init__(self, model: nn.Module, handle: Callable[..., None]) -> None:
        super().__init__()
        self._handle = handle  # sets the channel info of an op's result (edgeprune.pruning.ops.handle)
        self.state = TraceState()
        self.model = model
        self._infos: dict[int, tuple[weakref.ref, TInfo]] = {}
        self.state_names: dict[int, str] = {}
        for name, p in model.named_parameters():
            self.state_names[id(p)] = name
        for name, b in model.named_buffers():
            self.state_names[id(b)] = name
        self.module_stack: list[str] = []
        self.modules: dict[str, nn.Module] = dict(model.named_modules())
        self.blocks: list[Any] = []  # channel splits whose coupling no op has decided yet

    # -- tensor info ------------------------------------------------------------------------------
    def info(self, t: torch.Tensor) -> TInfo | None:
        entry = self._infos.get(id(t))
        if entry is not None and entry[0]() is t:
            return entry[1]
        return None

    def set_info(self, t: torch.Tensor, info: TInfo | None) -> None:
        if info is None or (info.labels is None and not info.taint):
            self._infos.pop(id(t), None)
            return
        self._infos[id(t)] = (weakref.ref(t), info)

    def state_name(self, t: torch.Tensor) -> str | None:
        return self.state_names.get(id(t))

    @property
    def where(self) -> str:
        return self.module_stack[-1] if self.module_stack else ""

    def producers(self, info: TInfo) -> set[int]:
        if info.labels is not None:
            return self.state.producers_of(info.labels)
        return set(info.taint)

    def same_channels(self, sources: tuple, labels: np.ndarray) -> bool:
        """Whether the channels counted by ``sources`` always keep as many channels as ``labels``
        (the same coupled classes, each as often)."""
        seen: dict[int, np.ndarray] = {id(s): s for s in sources}
        if not seen:
            return False
        counted = np.concatenate([s.ravel() for s in seen.values()])
        if counted.size != labels.size:
            return False
        find = self.state.find
        return bool(np.array_equal(np.sort([find(e) for e in counted.tolist()]),
                                   np.sort([find(e) for e in labels.ravel().tolist()])))

    def issue(self, op: str, infos: list[TInfo], detail: str = "") -> TInfo | None:
        """Record that ``op`` touched these channels in a way not understood; return the taint."""
        prods: set[int] = set()
        labelled: set[int] = set()
        for inf in infos:
            prods |= self.producers(inf)
            if inf.labels is not None:
                labelled |= self.state.producers_of(inf.labels)
        if labelled:
            self.state.issues.append(Issue(op, self.where, detail, labelled))
        return TInfo(taint=frozenset(prods)) if prods else None

    # -- dispatch ---------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is _SIZE or getattr(func, "__self__", None) is _SHAPE:
            return self._counted(args, kwargs, out)
        infos = [i for i in (self.info(t) for t in iter_tensors((args, kwargs))) if i is not None]
        if not infos:
            return out
        self._handle(self, func, args, kwargs, out, infos)
        return out


    def _counted(self, args: tuple, kwargs: dict, size: Any) -> Any:
        """Sizes of a labelled tensor with its channel count marked (see ``ChannelCount``)."""
        t = args[0] if args else None
        inf = self.info(t) if isinstance(t, torch.Tensor) else None
        if inf is None or inf.labels is None or inf.block is not None:
            return size
        if isinstance(size, torch.Size):
            return torch.Size([ChannelCount(n, (inf.labels,)) if d == inf.cdim else n
                               for d, n in enumerate(size)])
        dim = args[1] if len(args) > 1 else kwargs.get("dim")
        if isinstance(size, int) and isinstance(dim, int) and dim % t.ndim == inf.cdim:
            return ChannelCount(size, (inf.labels,))
        return size


def op_name(func: Any) -> str:
    """Readable name of a torch function for error messages."""
    self_obj = getattr(func, "__self__", None)
    name = getattr(func, "__name__", None) or repr(func)
    if name == "__get__" and self_obj is not None:
        return f"Tensor.{getattr(self_obj, '__name__', '?')}"
    qual = getattr(func, "__qualname__", name)
    return qual if "." in qual else name


# -- helpers shared by the op handlers ------------------------------------------------------------
def set_outputs(tr: Tracer, out: Any, info: TInfo | None) -> None:
    """Give every tensor in ``out`` this channel info."""
    for t in iter_tensors(out):
        tr.set_info(t, info)


def unknown(tr: Tracer, func, args, kwargs, out, infos, detail: str = "") -> None:
    """Op not understood: every labelled input channel gets an issue; outputs carry the taint."""
    setitem = func is torch.Tensor.__setitem__
    if not setitem and not any(isinstance(t, torch.Tensor) for t in iter_tensors(out)):
        return  # results that are not tensors (sizes, Python numbers) do not carry channels
    taint = tr.issue(op_name(func), infos, detail)
    set_outputs(tr, out, taint)
    if setitem or (out is None and args and isinstance(args[0], torch.Tensor)):
        tr.set_info(args[0], taint)


def arg_of(args: tuple, kwargs: dict, i: int, names: tuple[str, ...], default: Any = None) -> Any:
    """Argument ``i`` of a call, given by position or by one of ``names``."""
    if len(args) > i:
        return args[i]
    for n in names:
        if n in kwargs:
            return kwargs[n]
    return default


_ANY_RESULT = object()


def followed(tr: Tracer, src: Any, out: Any = _ANY_RESULT, blocks: bool = False) -> TInfo | None:
    """Channel info of an op's input ``src`` when a handler can follow it: labelled channels (split
    into blocks when ``blocks``) and, where ``out`` is given, a single result tensor. None means the
    handler leaves the op to ``unknown``."""
    inf = tr.info(src) if isinstance(src, torch.Tensor) else None
    if inf is None or (inf.block is None if blocks else inf.labels is None):
        return None
    if out is not _ANY_RESULT and not isinstance(out, torch.Tensor):
        return None
    return inf
