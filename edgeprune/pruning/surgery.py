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


def _validate_all(model: nn.Module, plan: PruningPlan) -> None:
    """Check every step against the model as the steps before it would leave it; touches nothing."""
    shapes: dict[str, list[int]] = {}
    values: dict[tuple[str, str], Any] = {}
    for k, step in enumerate(plan.steps):
        for p in step["params"]:
            if p["name"] not in shapes:
                try:
                    shapes[p["name"]] = list(get_tensor(model, p["name"]).shape)
                except KeyError:
                    raise InvalidPlanError(
                        f"plan step {k}: the model has no parameter or buffer '{p['name']}' "
                        "(a plan only fits the architecture it was made for)") from None
            shape = shapes[p["name"]]
            if p["dim"] >= len(shape) or shape[p["dim"]] != p["size"]:
                raise InvalidPlanError(
                    f"plan step {k}: '{p['name']}' has shape {tuple(shape)}, the plan expects size "
                    f"{p['size']} on dim {p['dim']} (was the model already pruned, or is it another "
                    "architecture?)")
        for p in step["params"]:
            shapes[p["name"]][p["dim"]] -= len(p["remove"])
        for a in step["attrs"]:
            key = (a["module"], a["attr"])
            if key not in values:
                try:
                    module = model.get_submodule(a["module"]) if a["module"] else model
                except AttributeError:
                    raise InvalidPlanError(
                        f"plan step {k}: the model has no module '{a['module']}'") from None
                values[key] = getattr(module, a["attr"], _MISSING)
            if values[key] is _MISSING or not _same(values[key], a["old"]):
                have = "<missing>" if values[key] is _MISSING else values[key]
                raise InvalidPlanError(f"plan step {k}: {a['module']}.{a['attr']} is {have!r}, "
                                       f"the plan expects {a['old']!r}")
            values[key] = a["new"]


_MISSING = object()


class _Snapshot:
    """The tensors and attributes a plan replaces, kept by reference so a failure can put them back."""

    def __init__(self, model: nn.Module, plan: PruningPlan) -> None:
        self.model = model
        self.tensors: dict[str, torch.Tensor] = {}
        self.attrs: dict[tuple[str, str], Any] = {}
        for step in plan.steps:
            for p in step["params"]:
                self.tensors.setdefault(p["name"], get_tensor(model, p["name"]))
            for a in step["attrs"]:
                module = model.get_submodule(a["module"]) if a["module"] else model
                self.attrs.setdefault((a["module"], a["attr"]), getattr(module, a["attr"]))

    def restore(self) -> None:
        for name, t in self.tensors.items():
            mod_name, _, attr = name.rpartition(".")
            module = self.model.get_submodule(mod_name) if mod_name else self.model
            (module._parameters if attr in module._parameters else module._buffers)[attr] = t
        for (mod, attr), value in self.attrs.items():
            setattr(self.model.get_submodule(mod) if mod else self.model, attr, value)


def apply_step(model: nn.Module, step: dict[str, Any]) -> None:
    """Slice the step's parameters and set its attributes (no checks: callers validate first)."""
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


def apply(model: nn.Module, plan: PruningPlan, example_inputs: Any = None, *, verify: bool = True,
          graph: Any = None) -> nn.Module:
    """Remove the planned channels from ``model`` in place and return it; all or nothing.

    Every step is checked against the model (names, shapes, layer attributes, as the earlier steps
    leave them) before anything changes. With ``example_inputs`` (and ``verify=True``, the default)
    each step is also checked against the model's traced dataflow fingerprint and by the
    zeroed-channel output check (``PruneVerificationError``). Without them only the plan's
    structure can be checked; any failure leaves the model exactly as it was.
    """
    if not isinstance(plan, PruningPlan):
        raise InvalidPlanError(f"expected a PruningPlan, got {type(plan).__name__}")
    if not isinstance(verify, bool):
        raise InvalidPlanError(f"verify must be True or False, got {verify!r}")
    _validate_all(model, plan)
    if example_inputs is not None and verify:
        from edgeprune.pruning.verify import verified_apply

        return verified_apply(model, plan, example_inputs, graph)
    snap = _Snapshot(model, plan)
    try:
        for step in plan.steps:
            apply_step(model, step)
    except BaseException:
        snap.restore()
        raise
    return model
