"""YOLOv7's IDetect head (implicit knowledge layers) and the detector wrapper shared by the family.

The eval-mode decode is written for ONNX export: grids are built from each feature map's shape on
every forward (no cached grids baked in at one size), nothing is assigned in place into views, and
only the head's own output-conv sizes (never pruned) are used as Python ints.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from edgeprune.errors import InvalidConfigError


class _Implicit(nn.Module):
    """A learned per-channel tensor ``implicit`` (``[1, C, 1, 1]``, YOLOv7's name), drawn around ``mean``."""

    mean = 0.0

    def __init__(self, channels: int, std: float = 0.02) -> None:
        super().__init__()
        self.implicit = nn.Parameter(torch.empty(1, channels, 1, 1))
        nn.init.normal_(self.implicit, mean=self.mean, std=std)


class ImplicitA(_Implicit):
    """Learned per-channel offset ADDED to the input of an output conv (``[1, C, 1, 1]``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit + x


class ImplicitM(_Implicit):
    """Learned per-channel scale MULTIPLIED on an output conv's result (``[1, C_out, 1, 1]``)."""

    mean = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.implicit * x


class IDetect(nn.Module):
    """Anchor-based detection head with implicit layers, one 1x1 output conv per level.

    train(): list of ``[B, na, H, W, 5 + nc]`` raw logits. eval(): ``[B, N, 5 + nc]`` with
    ``(cx, cy, w, h)`` in input pixels, then objectness and class probabilities.
    """

    def __init__(self, num_classes: int, anchors: Sequence[Sequence[float]], channels: Sequence[int],
                 strides: Sequence[float] = (8.0, 16.0, 32.0)) -> None:
        super().__init__()
        self.nc = num_classes
        self.no = num_classes + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        if len(channels) != self.nl or len(strides) != self.nl:
            raise InvalidConfigError("IDetect: anchors, channels and strides must have one entry per level")
        # anchors in input pixels, [nl, na, 2]; buffers follow .to(device) and land in state_dict
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, self.na, 2))
        self.register_buffer("stride", torch.tensor(strides, dtype=torch.float32))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
        self.ia = nn.ModuleList(ImplicitA(c) for c in channels)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in channels)
        self._initialize_biases()

    @torch.no_grad()
    def _initialize_biases(self) -> None:
        """YOLOv7's prior: about 8 objects per 640x640 image, class probability about 0.6 / nc."""
        for conv, s in zip(self.m, self.stride.tolist()):
            b = conv.bias.view(self.na, self.no)
            b[:, 4] += math.log(8 / (640 / s) ** 2)
            b[:, 5:] += math.log(0.6 / (self.nc - 0.99))

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        raw = []
        for i in range(self.nl):
            y = self.im[i](self.m[i](self.ia[i](feats[i])))
            # [B, na*no, H, W] -> [B, na, H, W, no]; unflatten needs no shape unpacking
            raw.append(y.unflatten(1, (self.na, self.no)).permute(0, 1, 3, 4, 2).contiguous())
        if self.training:
            return raw
        return torch.cat([self.decode(p, i) for i, p in enumerate(raw)], 1)

    def decode(self, p: torch.Tensor, level: int) -> torch.Tensor:
        """Raw ``[B, na, H, W, no]`` logits of one level -> ``[B, na*H*W, no]`` boxes in pixels."""
        ny, nx = p.shape[2], p.shape[3]
        ys = torch.arange(ny, device=p.device, dtype=p.dtype)
        xs = torch.arange(nx, device=p.device, dtype=p.dtype)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack((gx, gy), -1).view(1, 1, ny, nx, 2)
        anchor = self.anchors[level].to(p.dtype).view(1, self.na, 1, 1, 2)
        y = p.sigmoid()
        xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[level].to(p.dtype)
        wh = (y[..., 2:4] * 2.0) ** 2 * anchor
        return torch.cat((xy, wh, y[..., 4:]), -1).flatten(1, 3)


def check_names(num_classes: int, names: Sequence[str] | None) -> list[str]:
    """Validate num_classes and names; default names are class0, class1, ..."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise InvalidConfigError(f"num_classes must be a positive int, got {num_classes!r}")
    if names is None:
        return [f"class{i}" for i in range(num_classes)]
    names = list(names)
    if len(names) != num_classes or not all(isinstance(n, str) for n in names):
        raise InvalidConfigError(
            f"names must be {num_classes} strings (one per class), got {len(names)}: {names[:5]!r}...")
    return names


class Detector(nn.Module):
    """backbone -> neck -> IDetect, with ``num_classes`` and ``names`` (the model contract)."""

    def __init__(self, backbone: nn.Module, neck: nn.Module, detect: IDetect,
                 names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.detect = detect
        self.num_classes = detect.nc
        self.names = check_names(detect.nc, names)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor] | torch.Tensor:
        return self.detect(self.neck(self.backbone(x)))
