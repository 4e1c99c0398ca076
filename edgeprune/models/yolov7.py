"""YOLOv7 and YOLOv7-tiny, following WongKinYiu/yolov7 cfg/training/yolov7.yaml and yolov7-tiny.yaml.

Layer numbers in comments refer to the official yaml, so the two can be read side by side.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgeprune.models.common import (
    SPPCSPC,
    ConvBNAct,
    MPDown,
    RepConv,
    SPPCSPTiny,
    elan_backbone,
    elan_head,
    elan_tiny,
    leaky,
)
from edgeprune.models.head import Detector, IDetect, check_names

YOLOV7_ANCHORS = ((12, 16, 19, 36, 40, 28), (36, 75, 76, 55, 72, 146), (142, 110, 192, 243, 459, 401))
YOLOV7_TINY_ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))
Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class YOLOv7Backbone(nn.Module):
    """Stem and four ELAN stages; returns P3 (512 ch, /8), P4 (1024, /16), P5 (1024, /32)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(  # layers 0-3
            ConvBNAct(3, 32, 3, 1), ConvBNAct(32, 64, 3, 2),
            ConvBNAct(64, 64, 3, 1), ConvBNAct(64, 128, 3, 2))
        self.stage2 = elan_backbone(128, 64, 256)  # 4-11
        self.down3 = MPDown(256, 128)  # 12-16
        self.stage3 = elan_backbone(256, 128, 512)  # 17-24 (P3)
        self.down4 = MPDown(512, 256)  # 25-29
        self.stage4 = elan_backbone(512, 256, 1024)  # 30-37 (P4)
        self.down5 = MPDown(1024, 512)  # 38-42
        self.stage5 = elan_backbone(1024, 256, 1024)  # 43-50 (P5)

    def forward(self, x: torch.Tensor) -> Features:
        p3 = self.stage3(self.down3(self.stage2(self.stem(x))))
        p4 = self.stage4(self.down4(p3))
        p5 = self.stage5(self.down5(p4))
        return p3, p4, p5


class YOLOv7Neck(nn.Module):
    """SPPCSPC, top-down and bottom-up ELAN-H paths (PAN), RepConv per level (layers 51-104)."""

    def __init__(self) -> None:
        super().__init__()
        self.sppcspc = SPPCSPC(1024, 512)  # 51
        self.reduce5 = ConvBNAct(512, 256, 1, 1)  # 52
        self.lateral4 = ConvBNAct(1024, 256, 1, 1)  # 54
        self.elan_up4 = elan_head(512, 256, 256)  # 56-63
        self.reduce4 = ConvBNAct(256, 128, 1, 1)  # 64
        self.lateral3 = ConvBNAct(512, 128, 1, 1)  # 66
        self.elan_up3 = elan_head(256, 128, 128)  # 68-75
        self.down4 = MPDown(128, 128)  # 76-79
        self.elan_down4 = elan_head(512, 256, 256)  # 81-88
        self.down5 = MPDown(256, 256)  # 89-92
        self.elan_down5 = elan_head(1024, 512, 512)  # 94-101
        self.rep3 = RepConv(128, 256)  # 102
        self.rep4 = RepConv(256, 512)  # 103
        self.rep5 = RepConv(512, 1024)  # 104
        self.up5 = nn.Upsample(scale_factor=2, mode="nearest")
        self.up4 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, feats: Features) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        s5 = self.sppcspc(p5)
        u4 = self.elan_up4(torch.cat([self.lateral4(p4), self.up5(self.reduce5(s5))], 1))
        u3 = self.elan_up3(torch.cat([self.lateral3(p3), self.up4(self.reduce4(u4))], 1))
        d4 = self.elan_down4(torch.cat([self.down4(u3), u4], 1))
        d5 = self.elan_down5(torch.cat([self.down5(d4), s5], 1))
        return [self.rep3(u3), self.rep4(d4), self.rep5(d5)]


class YOLOv7TinyBackbone(nn.Module):
    """Two stride-2 convs and four tiny ELANs separated by 2x2 max-pools (layers 0-28)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBNAct(3, 32, 3, 2, leaky), ConvBNAct(32, 64, 3, 2, leaky))  # 0-1
        self.stage2 = elan_tiny(64, 32, 64)  # 2-7
        # one module per call site (no shared modules), so tracers see each use by its own name
        self.pool3 = nn.MaxPool2d(2, 2)  # 8
        self.stage3 = elan_tiny(64, 64, 128)  # 9-14 (P3)
        self.pool4 = nn.MaxPool2d(2, 2)  # 15
        self.stage4 = elan_tiny(128, 128, 256)  # 16-21 (P4)
        self.pool5 = nn.MaxPool2d(2, 2)  # 22
        self.stage5 = elan_tiny(256, 256, 512)  # 23-28 (P5)

    def forward(self, x: torch.Tensor) -> Features:
        p3 = self.stage3(self.pool3(self.stage2(self.stem(x))))
        p4 = self.stage4(self.pool4(p3))
        p5 = self.stage5(self.pool5(p4))
        return p3, p4, p5


class YOLOv7TinyNeck(nn.Module):
    """Tiny SPP block, PAN with tiny ELANs and a 3x3 conv per level (layers 29-76)."""

    def __init__(self) -> None:
        super().__init__()
        self.spp = SPPCSPTiny(512, 256)  # 29-37
        self.reduce5 = ConvBNAct(256, 128, 1, 1, leaky)  # 38
        self.lateral4 = ConvBNAct(256, 128, 1, 1, leaky)  # 40
        self.elan_up4 = elan_tiny(256, 64, 128)  # 42-47
        self.reduce4 = ConvBNAct(128, 64, 1, 1, leaky)  # 48
        self.lateral3 = ConvBNAct(128, 64, 1, 1, leaky)  # 50
        self.elan_up3 = elan_tiny(128, 32, 64)  # 52-57
        self.down4 = ConvBNAct(64, 128, 3, 2, leaky)  # 58
        self.elan_down4 = elan_tiny(256, 64, 128)  # 60-65
        self.down5 = ConvBNAct(128, 256, 3, 2, leaky)  # 66
        self.elan_down5 = elan_tiny(512, 128, 256)  # 68-73
        self.out3 = ConvBNAct(64, 128, 3, 1, leaky)  # 74
        self.out4 = ConvBNAct(128, 256, 3, 1, leaky)  # 75
        self.out5 = ConvBNAct(256, 512, 3, 1, leaky)  # 76
        self.up5 = nn.Upsample(scale_factor=2, mode="nearest")
        self.up4 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, feats: Features) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        s5 = self.spp(p5)
        u4 = self.elan_up4(torch.cat([self.lateral4(p4), self.up5(self.reduce5(s5))], 1))
        u3 = self.elan_up3(torch.cat([self.lateral3(p3), self.up4(self.reduce4(u4))], 1))
        d4 = self.elan_down4(torch.cat([self.down4(u3), u4], 1))
        d5 = self.elan_down5(torch.cat([self.down5(d4), s5], 1))
        return [self.out3(u3), self.out4(d4), self.out5(d5)]


def yolov7(num_classes: int = 80, names: Sequence[str] | None = None) -> Detector:
    """YOLOv7 (training form: RepConv unfused, implicit layers), randomly initialised."""
    names = check_names(num_classes, names)
    detect = IDetect(num_classes, YOLOV7_ANCHORS, (256, 512, 1024))
    return Detector(YOLOv7Backbone(), YOLOv7Neck(), detect, names)


def yolov7_tiny(num_classes: int = 80, names: Sequence[str] | None = None) -> Detector:
    """YOLOv7-tiny (LeakyReLU 0.1), randomly initialised."""
    names = check_names(num_classes, names)
    detect = IDetect(num_classes, YOLOV7_TINY_ANCHORS, (128, 256, 512))
    return Detector(YOLOv7TinyBackbone(), YOLOv7TinyNeck(), detect, names)
