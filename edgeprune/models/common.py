"""Building blocks of the YOLOv7 family: Conv-BN-act, ELAN, MP downsampling, SPP variants, RepConv.

Written from the published architecture (WongKinYiu/yolov7 ``cfg/training/*.yaml`` and
``models/common.py``). Every block is a plain ``nn.Module`` whose channel joins are explicit
``torch.cat`` calls, so the pruning tracer sees exactly where channels are concatenated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ActFactory = Callable[[], nn.Module]

# YOLOv7's initialize_weights() sets these on every BatchNorm2d.
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


def silu() -> nn.Module:
    """SiLU activation (YOLOv7)."""
    return nn.SiLU()


def leaky() -> nn.Module:
    """LeakyReLU(0.1) activation (YOLOv7-tiny)."""
    return nn.LeakyReLU(0.1)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm2d with YOLOv7's eps and momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class ConvBNAct(nn.Module):
    """Conv2d (no bias, 'same' padding) -> BatchNorm2d -> activation: YOLOv7's ``Conv``."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, act: ActFactory = silu) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, padding=k // 2, bias=False)
        self.bn = batch_norm(c_out)
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ELAN(nn.Module):
    """Efficient layer aggregation block.

    Two 1x1 branches from the input (``cv1``, ``cv2``); a chain of 3x3 convs (``hidden``) from
    ``cv2``; a concat of selected intermediate outputs; a 1x1 fusing conv (``cv_out``).
    Outputs are indexed ``[cv1, cv2, hidden_0, hidden_1, ...]`` and ``concat_ids`` lists which
    of them are concatenated, in the order of the official yaml (newest first).
    """

    def __init__(
        self,
        c_in: int,
        c_branch: int,
        c_hidden: int,
        c_out: int,
        n_hidden: int,
        concat_ids: Sequence[int],
        act: ActFactory = silu,
    ) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_branch, 1, 1, act)
        self.cv2 = ConvBNAct(c_in, c_branch, 1, 1, act)
        self.hidden = nn.ModuleList(
            ConvBNAct(c_branch if i == 0 else c_hidden, c_hidden, 3, 1, act) for i in range(n_hidden)
        )
        self.concat_ids = tuple(concat_ids)
        widths = [c_branch, c_branch] + [c_hidden] * n_hidden
        self.cv_out = ConvBNAct(sum(widths[i] for i in self.concat_ids), c_out, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.cv1(x), self.cv2(x)]
        y = outs[1]
        for conv in self.hidden:
            y = conv(y)
            outs.append(y)
        return self.cv_out(torch.cat([outs[i] for i in self.concat_ids], 1))


def elan_backbone(c_in: int, c_hidden: int, c_out: int, act: ActFactory = silu) -> ELAN:
    """YOLOv7 backbone ELAN: 4 hidden 3x3 convs, concat [-1, -3, -5, -6]."""
    return ELAN(c_in, c_hidden, c_hidden, c_out, 4, (5, 3, 1, 0), act)


def elan_head(c_in: int, c_branch: int, c_out: int, act: ActFactory = silu) -> ELAN:
    """YOLOv7 head ELAN (ELAN-H): 4 hidden convs of half width, concat of all six outputs."""
    return ELAN(c_in, c_branch, c_branch // 2, c_out, 4, (5, 4, 3, 2, 1, 0), act)


def elan_tiny(c_in: int, c_hidden: int, c_out: int, act: ActFactory = leaky) -> ELAN:
    """YOLOv7-tiny ELAN: 2 hidden 3x3 convs, concat [-1, -2, -3, -4]."""
    return ELAN(c_in, c_hidden, c_hidden, c_out, 2, (3, 2, 1, 0), act)


class MPDown(nn.Module):
    """YOLOv7 MP transition: cat([conv3x3 s2 (conv1x1 x), conv1x1 (maxpool2 x)])."""

    def __init__(self, c_in: int, c_branch: int, act: ActFactory = silu) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(2, 2)
        self.cv_pool = ConvBNAct(c_in, c_branch, 1, 1, act)
        self.cv1 = ConvBNAct(c_in, c_branch, 1, 1, act)
        self.cv2 = ConvBNAct(c_branch, c_branch, 3, 2, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.cv2(self.cv1(x)), self.cv_pool(self.pool(x))], 1)


def _same_pools(kernels: Sequence[int]) -> nn.ModuleList:
    return nn.ModuleList(nn.MaxPool2d(k, 1, padding=k // 2) for k in kernels)


class SPPCSPC(nn.Module):
    """YOLOv7 SPPCSPC: a CSP block around spatial pyramid pooling with max-pools 5, 9, 13."""

    def __init__(self, c_in: int, c_out: int, kernels: Sequence[int] = (5, 9, 13),
                 act: ActFactory = silu) -> None:
        super().__init__()
        c_ = c_out  # hidden width = int(2 * c2 * 0.5) in the official code
        self.cv1 = ConvBNAct(c_in, c_, 1, 1, act)
        self.cv2 = ConvBNAct(c_in, c_, 1, 1, act)
        self.cv3 = ConvBNAct(c_, c_, 3, 1, act)
        self.cv4 = ConvBNAct(c_, c_, 1, 1, act)
        self.pools = _same_pools(kernels)
        self.cv5 = ConvBNAct((len(kernels) + 1) * c_, c_, 1, 1, act)
        self.cv6 = ConvBNAct(c_, c_, 3, 1, act)
        self.cv7 = ConvBNAct(2 * c_, c_out, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [pool(x1) for pool in self.pools], 1)))
        return self.cv7(torch.cat([y1, self.cv2(x)], 1))


class SPPCSPTiny(nn.Module):
    """YOLOv7-tiny's simplified SPP block (inline in yolov7-tiny.yaml, layers 29-37)."""

    def __init__(self, c_in: int, c_out: int, kernels: Sequence[int] = (5, 9, 13),
                 act: ActFactory = leaky) -> None:
        super().__init__()
        self.cv1 = ConvBNAct(c_in, c_out, 1, 1, act)
        self.cv2 = ConvBNAct(c_in, c_out, 1, 1, act)
        self.pools = _same_pools(kernels)
        self.cv3 = ConvBNAct((len(kernels) + 1) * c_out, c_out, 1, 1, act)
        self.cv4 = ConvBNAct(2 * c_out, c_out, 1, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(x)
        # official order: cat[SP13, SP9, SP5, conv] -> conv -> cat[conv, cv1]
        pooled = [pool(y) for pool in self.pools][::-1]
        y = self.cv3(torch.cat(pooled + [y], 1))
        return self.cv4(torch.cat([y, self.cv1(x)], 1))


class RepConv(nn.Module):
    """RepVGG-style conv in training form: act(BN(conv3x3 x) + BN(conv1x1 x) [+ BN(x)]).

    The identity branch exists only when input and output channels match and stride is 1
    (never the case in YOLOv7's head).
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1, act: ActFactory = silu) -> None:
        super().__init__()
        self.rbr_dense = nn.Sequential(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), batch_norm(c_out))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c_in, c_out, 1, s, 0, bias=False), batch_norm(c_out))
        self.rbr_identity = batch_norm(c_in) if c_in == c_out and s == 1 else None
        self.act = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            y = y + self.rbr_identity(x)
        return self.act(y)
