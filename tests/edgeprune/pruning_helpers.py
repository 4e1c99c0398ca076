"""Models and inputs the pruning tests share."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

X = torch.rand(1, 3, 8, 8)


class Mid(nn.Module):
    """Wraps one mid-network op between two convs (the first, 'a', makes the channels it acts on)."""

    def __init__(self, op, c_mid: int = 8) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(c_mid, 4, 1)
        self.op = op

    def forward(self, x):
        return self.b(self.op(self.a(x)))


def randomize_norms(model: nn.Module, std: float = 0.2) -> nn.Module:
    """Non-trivial BatchNorm statistics and norm affine parameters, in eval mode: untrained defaults
    (mean 0, var 1, weight 1, bias 0) would let a wrongly kept or dropped channel go unnoticed."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, std)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, std)
        elif isinstance(m, nn.LayerNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, std)
    return model.eval()


def build_net(nets: dict[str, tuple[Callable[[], nn.Module], int]], name: str,
              seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """``nets[name]`` (a factory and its input size) with randomized norms, and an example input."""
    cls, size = nets[name]
    torch.manual_seed(seed)
    model = randomize_norms(cls())
    return model, torch.rand(2, 3, size, size)
