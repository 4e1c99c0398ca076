"""Record the channel dataflow of one eager forward pass.

A ``TorchFunctionMode`` sees every functional op and tensor method; module hooks keep a stack of
the module paths being executed (for error messages and split-size attributes). Each live tensor is
mapped (by identity, checked with a weak reference) to a ``TInfo``: which of its dims carries
channels and which element each channel is, or, after an op edgeprune does not understand, the set of
producers whose channels went into it ("taint").
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from edgeprune.errors import InvalidModelError, UnsupportedOperationError
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

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
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
        from edgeprune.pruning.ops import handle  # local: ops imports this module

        handle(self, func, args, kwargs, out, infos)
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


def run_traced(model: nn.Module, example_inputs: Any) -> Tracer:
    """Trace one eval-mode, no-grad forward pass.

    The channel structure does not depend on values, so the pass first runs on a copy of the model
    on the ``meta`` device (no arithmetic, no activation memory). Models whose forward needs real
    values (data-dependent branches, CPU tensors kept outside parameters) are traced for real.
    """
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    try:
        shadow = _meta_copy(model)
        meta_inputs = _map_tensors(example_inputs, lambda t: t.to("meta"))
    except Exception:  # noqa: BLE001  (any copy failure just means: trace the real model)
        shadow = None
    if shadow is not None:
        try:
            return _run(shadow, meta_inputs)
        except (UnsupportedOperationError, InvalidModelError):
            raise
        except Exception:  # noqa: BLE001  (forward needs real data: fall back)
            pass
    try:
        return _run(model, example_inputs)
    except (UnsupportedOperationError, InvalidModelError):
        raise
    except Exception as e:  # noqa: BLE001
        raise InvalidModelError(f"the model's forward pass failed on example_inputs: "
                                f"{type(e).__name__}: {e}") from e


def check_forward(model: nn.Module, example_inputs: Any) -> None:
    """Run the (pruned) model once on meta tensors, or for real if it needs values; raise
    InvalidPlanError naming the failure if its forward no longer runs."""
    from edgeprune.errors import InvalidPlanError

    try:
        runner, inputs = _meta_copy(model), _map_tensors(example_inputs, lambda t: t.to("meta"))
        _call(runner.eval(), inputs)
        return
    except Exception:  # noqa: BLE001  (needs real values: run for real below)
        pass
    modes = {m: m.training for m in model.modules()}
    try:
        with torch.no_grad():
            _call(model.eval(), example_inputs)
    except Exception as e:  # noqa: BLE001
        raise InvalidPlanError(f"the pruned model's forward fails: {type(e).__name__}: {e}") from e
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _call(model: nn.Module, inputs: Any) -> Any:
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    raise InvalidModelError("example_inputs must be a tensor, a tuple/list or a dict of tensors")


def _meta_copy(model: nn.Module) -> nn.Module:
    """Copy of ``model`` whose parameters and buffers live on ``meta`` (their data is never copied)."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo).to("meta")


def _map_tensors(obj: Any, fn) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj


def _run(model: nn.Module, example_inputs: Any) -> Tracer:
    tracer = Tracer(model)
    inputs = example_inputs
    handles = []
    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(_push(tracer, name)))
        handles.append(mod.register_forward_hook(_pop(tracer), always_call=True))
    was_training = {m: m.training for m in model.modules()}
    model.eval()
    try:
        for i, t in enumerate(iter_tensors(inputs)):
            if t.ndim >= 2:
                labels = tracer.state.new_producer(f"input{i}", t.shape[1], frozen="model input")
                tracer.set_info(t, TInfo(1, labels))
        with torch.no_grad(), tracer:
            out = _call(model, inputs)
        for block in tracer.blocks:
            block.finalize(tracer)
        for t in iter_tensors(out):
            inf = tracer.info(t)
            if inf is not None:
                tracer.state.outputs |= tracer.producers(inf)
    finally:
        for h in handles:
            h.remove()
        for m, mode in was_training.items():
            m.train(mode)
    return tracer


def _push(tracer: Tracer, name: str):
    def hook(module, args):
        tracer.module_stack.append(name)

    return hook


def _pop(tracer: Tracer):
    def hook(module, args, output):
        if tracer.module_stack:
            tracer.module_stack.pop()

    return hook


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
