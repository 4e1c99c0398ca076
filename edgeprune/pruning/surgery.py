"""Physical removal of channels: slice parameters/buffers, update layer attributes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidPlanError
from edgeprune.pruning.importance import get_tensor
from edgeprune.pruning.plan_io import PruningPlan


def derive_attrs(module: nn.Module, new_shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[Any, Any]]:
    """Layer attributes (old, new) implied by new parameter shapes, for the layer types we know."""
    changes: dict[str, Any] = {}
    w = new_shapes.get("weight")
    if isinstance(module, nn.modules.conv._ConvNd) and w is not None:
        if module.transposed:
            changes.update(in_channels=w[0], out_channels=w[1] * module.groups)
        elif module.groups > 1 and module.groups == module.in_channels == module.out_channels:
            changes.update(in_channels=w[0], out_channels=w[0], groups=w[0])
        else:
            changes.update(out_channels=w[0], in_channels=w[1] * module.groups)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        shape = w or new_shapes.get("running_mean")
        if shape is not None:
            changes["num_features"] = shape[0]
    elif isinstance(module, nn.Linear) and w is not None:
        changes.update(out_features=w[0], in_features=w[1])
    elif isinstance(module, nn.PReLU) and w is not None:
        changes["num_parameters"] = w[0]
    return {k: (getattr(module, k), v) for k, v in changes.items() if getattr(module, k) != v}


def _set_tensor(model: nn.Module, name: str, value: torch.Tensor) -> None:
    mod_name, _, attr = name.rpartition(".")
    module = model.get_submodule(mod_name) if mod_name else model
    if attr in module._parameters:
        old = module._parameters[attr]
        module._parameters[attr] = nn.Parameter(value, requires_grad=old.requires_grad)
    else:
        module._buffers[attr] = value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return list(a) == list(b)
    return a == b


def _validate(model: nn.Module, step: dict, k: int) -> None:
    for p in step["params"]:
        try:
            t = get_tensor(model, p["name"])
        except KeyError:
            raise InvalidPlanError(f"plan step {k}: the model has no parameter or buffer '{p['name']}' "
                                   "(a plan only fits the architecture it was made for)") from None
        if p["dim"] >= t.ndim or t.shape[p["dim"]] != p["size"]:
            raise InvalidPlanError(
                f"plan step {k}: '{p['name']}' has shape {tuple(t.shape)}, the plan expects size {p['size']} "
                f"on dim {p['dim']} (was the model already pruned, or is it another architecture?)")
    for a in step["attrs"]:
        try:
            module = model.get_submodule(a["module"]) if a["module"] else model
        except AttributeError:
            raise InvalidPlanError(f"plan step {k}: the model has no module '{a['module']}'") from None
        if not hasattr(module, a["attr"]) or not _same(getattr(module, a["attr"]), a["old"]):
            have = getattr(module, a["attr"], "<missing>")
            raise InvalidPlanError(f"plan step {k}: {a['module']}.{a['attr']} is {have!r}, "
                                   f"the plan expects {a['old']!r}")


def apply(model: nn.Module, plan: PruningPlan) -> nn.Module:
    """Remove the planned channels from ``model`` in place and return it (no example inputs needed).

    Every step is checked against the model before anything is changed; a mismatch raises
    InvalidPlanError and leaves that step's tensors untouched.
    """
    if not isinstance(plan, PruningPlan):
        raise InvalidPlanError(f"expected a PruningPlan, got {type(plan).__name__}")
    for k, step in enumerate(plan.steps):
        _validate(model, step, k)
        with torch.no_grad():
            for p in step["params"]:
                t = get_tensor(model, p["name"])
                removed = set(p["remove"])
                keep = torch.tensor([i for i in range(p["size"]) if i not in removed], dtype=torch.long,
                                    device=t.device)
                _set_tensor(model, p["name"], t.detach().index_select(p["dim"], keep))
        for a in step["attrs"]:
            module = model.get_submodule(a["module"]) if a["module"] else model
            new = a["new"]
            setattr(module, a["attr"], tuple(new) if a.get("type") == "tuple" else new)
    return model
