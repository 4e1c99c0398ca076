"""Parameter and FLOP counts (FLOPs = 2 x MACs of conv / transposed conv / linear layers, bias and
activations not counted: the convention behind the published YOLOv7 GFLOPs)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidModelError
from edgeprune.forward import call_model, eval_mode

_COUNTED = (nn.modules.conv._ConvNd, nn.Linear)


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    w = module.weight
    if module.transposed:  # every input pixel is spread over the kernel: MACs follow the input size
        return 0
    return out.numel() * w.shape[1] * math.prod(w.shape[2:])


def count_flops(model: nn.Module, example_inputs: Any) -> int:
    """FLOPs of one eval-mode forward pass on ``example_inputs`` (2 x multiply-accumulates)."""
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
    total = [0]

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        if isinstance(module, nn.modules.conv._ConvNd) and module.transposed:
            x = args[0]
            w = module.weight  # [in, out/groups, k...]
            total[0] += x.numel() * w.shape[1] * math.prod(w.shape[2:])
        elif isinstance(out, torch.Tensor):
            total[0] += _macs(module, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _COUNTED)]
    with eval_mode(model, handles), torch.no_grad():
        call_model(model, example_inputs)
    return 2 * total[0]
