"""Record the channel dataflow of one eager forward pass (on meta tensors when possible)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidModelError, UnsupportedOperationError
from edgeprune.forward import call_model, eval_mode
from edgeprune.pruning.ops import handle
from edgeprune.pruning.recorder import TInfo, Tracer, iter_tensors


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
        call_model(runner.eval(), inputs)
        return
    except Exception:  # noqa: BLE001  (needs real values: run for real below)
        pass
    try:
        with eval_mode(model), torch.no_grad():
            call_model(model, example_inputs)
    except Exception as e:  # noqa: BLE001
        raise InvalidPlanError(f"the pruned model's forward fails: {type(e).__name__}: {e}") from e


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
    tracer = Tracer(model, handle)
    inputs = example_inputs
    handles = []
    for name, mod in model.named_modules():
        handles.append(mod.register_forward_pre_hook(_push(tracer, name)))
        handles.append(mod.register_forward_hook(_pop(tracer), always_call=True))
    with eval_mode(model, handles):
        for i, t in enumerate(iter_tensors(inputs)):
            if t.ndim >= 2:
                labels = tracer.state.new_producer(f"input{i}", t.shape[1], frozen="model input")
                tracer.set_info(t, TInfo(1, labels))
        with torch.no_grad(), tracer:
            out = call_model(model, inputs)
        for block in tracer.blocks:
            block.finalize(tracer)
        for t in iter_tensors(out):
            inf = tracer.info(t)
            if inf is not None:
                tracer.state.outputs |= tracer.producers(inf)
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
