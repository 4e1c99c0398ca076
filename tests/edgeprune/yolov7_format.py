"""Checkpoints in the official YOLOv7 trainer's format, written without the official code.

The classes below carry the official import names (``models.yolo.Model``, ``models.common.Conv``,
...) and the official attribute layout, and compute the official forward (layer list routed by
``f``, IDetect decoding with ``anchor_grid``). ``save_official`` registers them as the modules
``models``, ``models.common`` and ``models.yolo`` only while pickling, so the file names the same
globals a real ``best.pt`` does and nothing of the test leaks into the loader's imports.
"""

from __future__ import annotations

import sys
import types
from copy import deepcopy

import torch
from torch import nn


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else act

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)


class MP(nn.Module):
    def __init__(self, k=2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x):
        return self.m(x)


class SP(nn.Module):
    def __init__(self, k=3, s=1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x):
        return self.m(x)


class SPPCSPC(nn.Module):
    def __init__(self, c1, c2, k=(5, 9, 13)):
        super().__init__()
        c_ = int(2 * c2 * 0.5)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(c_, c_, 3, 1)
        self.cv4 = Conv(c_, c_, 1, 1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k])
        self.cv5 = Conv(4 * c_, c_, 1, 1)
        self.cv6 = Conv(c_, c_, 3, 1)
        self.cv7 = Conv(2 * c_, c2, 1, 1)

    def forward(self, x):
        x1 = self.cv4(self.cv3(self.cv1(x)))
        y1 = self.cv6(self.cv5(torch.cat([x1] + [m(x1) for m in self.m], 1)))
        return self.cv7(torch.cat((y1, self.cv2(x)), dim=1))


class RepConv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1):
        super().__init__()
        self.act = nn.SiLU()
        self.rbr_identity = nn.BatchNorm2d(c1) if c2 == c1 and s == 1 else None
        self.rbr_dense = nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, bias=False), nn.BatchNorm2d(c2))
        self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        idn = 0 if self.rbr_identity is None else self.rbr_identity(x)
        return self.act(self.rbr_dense(x) + self.rbr_1x1(x) + idn)


class ImplicitA(nn.Module):
    def __init__(self, channel):
        super().__init__()
        self.implicit = nn.Parameter(torch.zeros(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=0.0, std=0.02)

    def forward(self, x):
        return self.implicit + x


class ImplicitM(nn.Module):
    def __init__(self, channel):
        super().__init__()
        self.implicit = nn.Parameter(torch.ones(1, channel, 1, 1))
        nn.init.normal_(self.implicit, mean=1.0, std=0.02)

    def forward(self, x):
        return self.implicit * x


class IDetect(nn.Module):
    stride = None

    def __init__(self, nc, anchors, ch):
        super().__init__()
        self.nc, self.no, self.nl, self.na = nc, nc + 5, len(anchors), len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl
        a = torch.tensor(anchors).float().view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.im[i](self.m[i](self.ia[i](x[i])))
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).to(x[i].dtype)
                y = x[i].sigmoid()
                xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * self.stride[i]
                wh = (y[..., 2:4] * 2) ** 2 * self.anchor_grid[i]
                z.append(torch.cat((xy, wh, y[..., 4:]), -1).view(bs, -1, self.no))
        return x if self.training else (torch.cat(z, 1), x)


class Model(nn.Module):
    def __init__(self, cfg: dict, nc: int):
        super().__init__()
        self.yaml = deepcopy(cfg)
        self.yaml["nc"] = nc
        self.model, self.save = _parse(self.yaml)
        det = self.model[-1]
        s = 256
        det.training = True
        det.stride = torch.tensor([s / x.shape[-2] for x in self.forward(torch.zeros(1, 3, s, s))])
        det.anchors /= det.stride.view(-1, 1, 1)
        self.stride = det.stride
        self.traced = False
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps, m.momentum = 1e-3, 0.03
            elif isinstance(m, (nn.SiLU, nn.LeakyReLU)):
                m.inplace = True

    def forward(self, x):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x


_MODULES = {"Conv": Conv, "Concat": Concat, "MP": MP, "SP": SP, "SPPCSPC": SPPCSPC, "RepConv": RepConv,
            "IDetect": IDetect, "nn.Upsample": nn.Upsample}


def _parse(d: dict):
    layers, save, ch = [], [], [3]
    for i, (f, name, args) in enumerate(d["backbone"] + d["head"]):
        m = _MODULES[name]
        args = list(args)
        if name in ("Conv", "RepConv", "SPPCSPC"):
            c1, c2 = ch[f], args[0]
            act = [nn.LeakyReLU(0.1)] if (name == "Conv" and d.get("leaky")) else []
            args = [c1, c2, *args[1:], *act]
        elif name == "Concat":
            c2 = sum(ch[x] for x in f)
        elif name == "IDetect":
            args = [d["nc"], d["anchors"], [ch[x] for x in f]]
            c2 = None
        else:
            c2 = ch[f]
        mod = m(*args)
        mod.i, mod.f, mod.type = i, f, f"models.common.{name}"
        mod.np = sum(p.numel() for p in mod.parameters())
        save.extend(x % i for x in ([f] if isinstance(f, int) else f) if x != -1)
        layers.append(mod)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(save)


def _elan(rows, c1x1, c3x3, c_out, cat, n3=4, split_from=-2):
    """Two 1x1 branches, a chain of 3x3 convs, a concat and a fusing 1x1 (the ELAN rows of the cfg)."""
    rows += [(-1, "Conv", [c1x1, 1, 1]), (split_from, "Conv", [c1x1, 1, 1])]
    rows += [(-1, "Conv", [c3x3, 3, 1]) for _ in range(n3)]
    rows += [(cat, "Concat", [1]), (-1, "Conv", [c_out, 1, 1])]


def _mp(rows, c, extra=()):
    rows += [(-1, "MP", []), (-1, "Conv", [c, 1, 1]), (-3, "Conv", [c, 1, 1]), (-1, "Conv", [c, 3, 2]),
             ([-1, -3, *extra], "Concat", [1])]


def yolov7_cfg() -> dict:
    """The layer list of cfg/training/yolov7.yaml (106 layers)."""
    b = [(-1, "Conv", [32, 3, 1]), (-1, "Conv", [64, 3, 2]), (-1, "Conv", [64, 3, 1]),
         (-1, "Conv", [128, 3, 2])]
    bb = [-1, -3, -5, -6]
    _elan(b, 64, 64, 256, bb)
    _mp(b, 128)
    _elan(b, 128, 128, 512, bb)  # 24
    _mp(b, 256)
    _elan(b, 256, 256, 1024, bb)  # 37
    _mp(b, 512)
    _elan(b, 256, 256, 1024, bb)  # 50
    hh = [-1, -2, -3, -4, -5, -6]
    h = [(-1, "SPPCSPC", [512]), (-1, "Conv", [256, 1, 1]), (-1, "nn.Upsample", [None, 2, "nearest"]),
         (37, "Conv", [256, 1, 1]), ([-1, -2], "Concat", [1])]
    _elan(h, 256, 128, 256, hh)  # 63
    h += [(-1, "Conv", [128, 1, 1]), (-1, "nn.Upsample", [None, 2, "nearest"]), (24, "Conv", [128, 1, 1]),
          ([-1, -2], "Concat", [1])]
    _elan(h, 128, 64, 128, hh)  # 75
    _mp(h, 128, (63,))
    _elan(h, 256, 128, 256, hh)  # 88
    _mp(h, 256, (51,))
    _elan(h, 512, 256, 512, hh)  # 101
    h += [(75, "RepConv", [256, 3, 1]), (88, "RepConv", [512, 3, 1]), (101, "RepConv", [1024, 3, 1]),
          ([102, 103, 104], "IDetect", [])]
    anchors = [[12, 16, 19, 36, 40, 28], [36, 75, 76, 55, 72, 146], [142, 110, 192, 243, 459, 401]]
    return {"nc": 80, "anchors": anchors, "backbone": b, "head": h}


def yolov7_tiny_cfg() -> dict:
    """The layer list of cfg/training/yolov7-tiny.yaml (78 layers, LeakyReLU 0.1)."""
    t = [-1, -2, -3, -4]
    b = [(-1, "Conv", [32, 3, 2]), (-1, "Conv", [64, 3, 2])]
    _elan(b, 32, 32, 64, t, n3=2)  # 7
    for c in (64, 128, 256):  # 8-28
        b.append((-1, "MP", []))
        _elan(b, c, c, 2 * c, t, n3=2)
    h = [(-1, "Conv", [256, 1, 1]), (-2, "Conv", [256, 1, 1]), (-1, "SP", [5]), (-2, "SP", [9]),
         (-3, "SP", [13]),
         (t, "Concat", [1]), (-1, "Conv", [256, 1, 1]), ([-1, -7], "Concat", [1]), (-1, "Conv", [256, 1, 1])]
    h += [(-1, "Conv", [128, 1, 1]), (-1, "nn.Upsample", [None, 2, "nearest"]), (21, "Conv", [128, 1, 1]),
          ([-1, -2], "Concat", [1])]
    _elan(h, 64, 64, 128, t, n3=2)  # 47
    h += [(-1, "Conv", [64, 1, 1]), (-1, "nn.Upsample", [None, 2, "nearest"]), (14, "Conv", [64, 1, 1]),
          ([-1, -2], "Concat", [1])]
    _elan(h, 32, 32, 64, t, n3=2)  # 57
    h += [(-1, "Conv", [128, 3, 2]), ([-1, 47], "Concat", [1])]
    _elan(h, 64, 64, 128, t, n3=2)  # 65
    h += [(-1, "Conv", [256, 3, 2]), ([-1, 37], "Concat", [1])]
    _elan(h, 128, 128, 256, t, n3=2)  # 73
    h += [(57, "Conv", [128, 3, 1]), (65, "Conv", [256, 3, 1]), (73, "Conv", [512, 3, 1]),
          ([74, 75, 76], "IDetect", [])]
    anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
    return {"nc": 80, "anchors": anchors, "backbone": b, "head": h, "leaky": True}


def official_model(tiny: bool, nc: int, names=None, seed: int = 0) -> Model:
    """A randomly initialised model with the official structure, BN statistics made non-trivial."""
    torch.manual_seed(seed)
    model = Model(yolov7_tiny_cfg() if tiny else yolov7_cfg(), nc)
    model.nc, model.hyp, model.gr = nc, {"lr0": 0.01, "box": 0.05}, 1.0
    model.names = list(names) if names else [f"item{i}" for i in range(nc)]
    model.class_weights = torch.ones(nc)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model.eval()


def set_anchors(model: Model, anchors_px: torch.Tensor) -> None:
    """What autoanchor does: new pixel anchors into anchor_grid, grid-unit anchors into anchors."""
    det = model.model[-1]
    det.anchor_grid[:] = anchors_px.clone().view_as(det.anchor_grid)
    det.anchors[:] = anchors_px.clone().view_as(det.anchors) / det.stride.view(-1, 1, 1)


def official_checkpoint(model: Model, ema: bool = True, stripped: bool = False) -> dict:
    """The dict train.py saves (``last.pt``/``best.pt``), or what strip_optimizer leaves of it."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    out = model(torch.rand(1, 3, 64, 64))
    sum(o.float().mean() for o in out).backward()
    opt.step()
    model.eval()
    ckpt = {"epoch": 12, "best_fitness": 0.3, "training_results": "      0/299 ...",
            "model": deepcopy(model).half(),
            "ema": deepcopy(model).half() if ema else None, "updates": 120 if ema else None,
            "optimizer": opt.state_dict(), "wandb_id": None}
    if stripped:  # utils/general.py strip_optimizer
        if ckpt.get("ema"):
            ckpt["model"] = ckpt["ema"]
        for k in ("optimizer", "training_results", "wandb_id", "ema", "updates"):
            ckpt[k] = None
        ckpt["epoch"] = -1
        ckpt["model"].half()
        for p in ckpt["model"].parameters():
            p.requires_grad = False
    return ckpt


def save_official(obj, path) -> None:
    """torch.save with this module's classes visible as ``models.common`` / ``models.yolo``."""
    pkg, common, yolo = (types.ModuleType(n) for n in ("models", "models.common", "models.yolo"))
    for name in ("Conv", "Concat", "MP", "SP", "SPPCSPC", "RepConv", "ImplicitA", "ImplicitM"):
        setattr(common, name, _MODULE_CLASSES[name])
    for name in ("Model", "IDetect"):
        setattr(yolo, name, _MODULE_CLASSES[name])
    pkg.common, pkg.yolo = common, yolo
    saved = {k: sys.modules.get(k) for k in ("models", "models.common", "models.yolo")}
    sys.modules.update({"models": pkg, "models.common": common, "models.yolo": yolo})
    try:
        torch.save(obj, path)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


_MODULE_CLASSES = {c.__name__: c for c in (Conv, Concat, MP, SP, SPPCSPC, RepConv, ImplicitA, ImplicitM)}
for _c in _MODULE_CLASSES.values():
    _c.__module__ = "models.common"
for _c in (Model, IDetect):
    _c.__module__ = "models.yolo"
    _MODULE_CLASSES[_c.__name__] = _c
