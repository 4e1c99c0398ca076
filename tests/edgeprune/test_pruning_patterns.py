"""Exactness, monotonicity and replay of the pruning core on the architecture patterns it must handle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pruning_helpers import build_net  # tests/edgeprune is on pytest's pythonpath
from torch import nn

import edgeprune as ep
from edgeprune.pruning.verify import max_output_change


def cbr(c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(c2), nn.SiLU())


class ResNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.b1 = nn.ModuleList([cbr(16, 16), nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16)])
        self.down = cbr(16, 32, s=2)
        self.short = nn.Sequential(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))
        self.b2 = nn.Sequential(cbr(32, 32), nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.b1[2](self.b1[1](self.b1[0](x))))
        y = self.down(x)
        y = self.b2[2](self.b2[1](self.b2[0](y)))
        x = torch.relu(y + self.short(x))
        return self.fc(torch.flatten(self.pool(x), 1))


class DenseNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.layers = nn.ModuleList([cbr(16 + 8 * i, 8) for i in range(3)])
        self.trans = cbr(40, 24, k=1)
        self.head = nn.Conv2d(24, 5, 1)

    def forward(self, x):
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return self.head(F.avg_pool2d(self.trans(x), 2))


class InceptionLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.b1 = cbr(16, 8, k=1)
        self.b2 = nn.Sequential(cbr(16, 8, k=1), cbr(8, 12))
        self.b3 = nn.Sequential(cbr(16, 4, k=1), cbr(4, 6, k=5))
        self.b4 = cbr(16, 6, k=1)
        self.out = nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.stem(x)
        pooled = F.max_pool2d(x, 3, 1, 1)
        return self.out(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(pooled)], dim=1))


class MobileNetV3Like(nn.Module):
    """Inverted residual: expand 1x1, depthwise 3x3, squeeze-excite (multiply), project, residual."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.expand = cbr(16, 48, k=1)
        self.dw = cbr(48, 48, g=48)
        self.se1 = nn.Conv2d(48, 12, 1)
        self.se2 = nn.Conv2d(12, 48, 1)
        self.project = nn.Sequential(nn.Conv2d(48, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = self.stem(x)
        y = self.dw(self.expand(x))
        s = F.hardsigmoid(self.se2(F.relu(self.se1(y.mean((2, 3), keepdim=True)))))
        x = x + self.project(y * s)
        return self.head(x.mean((2, 3)))


class C2f(nn.Module):
    """YOLOv8's C2f: split in two, bottlenecks on the last piece, concat every piece."""

    def __init__(self, c1: int, c2: int, n: int = 2, use_split: bool = False) -> None:
        super().__init__()
        self.c = c2 // 2
        self.use_split = use_split
        self.cv1 = cbr(c1, 2 * self.c, k=1)
        self.cv2 = cbr((2 + n) * self.c, c2, k=1)
        self.m = nn.ModuleList(nn.Sequential(cbr(self.c, self.c), cbr(self.c, self.c)) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1) if self.use_split else self.cv1(x).chunk(2, 1))
        for m in self.m:
            y.append(y[-1] + m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class C2fNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.a = C2f(16, 32)
        self.b = C2f(32, 32, use_split=True)
        self.sliced = SliceBlock(32)
        self.out = nn.Conv2d(32, 6, 1)

    def forward(self, x):
        return self.out(self.sliced(self.b(self.a(self.stem(x)))))


class SliceBlock(nn.Module):
    """Channel slicing with bounds held in an attribute (CSP-style partial transition)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.half = c // 2
        self.conv = cbr(c - self.half, c - self.half)

    def forward(self, x):
        return torch.cat([x[:, :self.half], self.conv(x[:, self.half:])], 1)


class SPPFNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 16)
        self.cv1 = cbr(16, 8, k=1)
        self.m = nn.MaxPool2d(5, 1, 2)  # one module, called three times
        self.cv2 = cbr(32, 16, k=1)
        self.out = nn.Conv2d(16, 7, 1)

    def forward(self, x):
        x = self.cv1(self.stem(x))
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.out(self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1)))


class FPNPAN(nn.Module):
    """Three scales, top-down upsample + concat, bottom-up stride-2 conv + concat, a shared conv."""

    def __init__(self) -> None:
        super().__init__()
        self.s1 = cbr(3, 16, s=2)
        self.s2 = cbr(16, 24, s=2)
        self.s3 = cbr(24, 32, s=2)
        self.lat3 = cbr(32, 16, k=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.td2 = cbr(24 + 16, 16)
        self.td1 = cbr(16 + 16, 16)
        self.bu1 = cbr(16, 16, s=2)
        self.bu2 = cbr(32, 16)
        self.bu3 = cbr(16, 16, s=2)
        self.bu4 = cbr(32, 16)
        self.shared = cbr(16, 16)  # applied to every level
        self.outs = nn.ModuleList(nn.Conv2d(16, 9, 1) for _ in range(3))

    def forward(self, x):
        c1 = self.s1(x)
        c2 = self.s2(c1)
        c3 = self.lat3(self.s3(c2))
        p2 = self.td2(torch.cat([self.up(c3), c2], 1))
        p1 = self.td1(torch.cat([F.interpolate(p2, scale_factor=2.0), c1], 1))
        n2 = self.bu2(torch.cat([self.bu1(p1), p2], 1))
        n3 = self.bu4(torch.cat([self.bu3(n2), c3], 1))
        return [o(self.shared(f)) for o, f in zip(self.outs, (p1, n2, n3))]


class UNetLike(nn.Module):
    """Transposed-conv decoder with a skip concat, a per-channel PReLU and a dict of outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.e1 = cbr(3, 16)
        self.e2 = cbr(16, 32, s=2)
        self.up = nn.ConvTranspose2d(32, 16, 2, 2)
        self.act = nn.PReLU(16)
        self.d1 = cbr(32, 16)
        self.mask = nn.Conv2d(16, 2, 1)
        self.aux = nn.Linear(32, 3)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(a)
        u = self.act(self.up(b))
        return {"mask": self.mask(self.d1(torch.cat([u, a], 1))), "aux": self.aux(b.mean((2, 3)))}


class FlattenLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(cbr(3, 8), nn.MaxPool2d(2), cbr(8, 12), nn.MaxPool2d(2))
        self.fc1 = nn.Linear(12 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x):
        x = self.features(x)
        return self.fc2(F.relu(self.fc1(x.view(x.size(0), -1))))


class ShapeBranchHead(nn.Module):
    """A detection head like YOLO's: implicit layers, a cached grid rebuilt when shapes change,
    reshapes of the output conv results, different outputs in train and eval."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(cbr(3, 16), cbr(16, 24, s=2))
        self.ia = nn.Parameter(torch.randn(1, 24, 1, 1) * 0.1)
        self.out = nn.Conv2d(24, 2 * 6, 1)
        self.im = nn.Parameter(1 + torch.randn(1, 12, 1, 1) * 0.1)
        self.grid = torch.zeros(1)

    def forward(self, x):
        y = self.out(self.body(x) + self.ia) * self.im
        b, _, h, w = y.shape
        y = y.view(b, 2, 6, h, w).permute(0, 1, 3, 4, 2).contiguous()
        if self.training:
            return y
        if self.grid.shape[2:4] != y.shape[2:4]:
            yv, xv = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            self.grid = torch.stack((xv, yv), 2).view(1, 1, h, w, 2).float()
        y = y.sigmoid()
        xy = (y[..., 0:2] * 2 - 0.5 + self.grid.to(y.device)) * 8
        return torch.cat((xy, y[..., 2:]), -1).view(b, -1, 6)


PATTERNS = {
    "residual": (ResNetLike, 16),
    "densenet": (DenseNetLike, 16),
    "inception": (InceptionLike, 16),
    "mobilenetv3": (MobileNetV3Like, 16),
    "c2f_split_slice": (C2fNet, 16),
    "sppf": (SPPFNet, 16),
    "fpn_pan": (FPNPAN, 32),
    "flatten_linear": (FlattenLinear, 16),
    "unet_deconv_dict": (UNetLike, 16),
    "shape_branch_head": (ShapeBranchHead, 16),
}


def outputs(out) -> list[torch.Tensor]:
    if isinstance(out, dict):
        return list(out.values())
    return list(out) if isinstance(out, (list, tuple)) else [out]


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A pattern model with non-trivial BN statistics, in eval mode, and its example input."""
    return build_net(PATTERNS, name, seed)


@pytest.mark.parametrize("name", sorted(PATTERNS))
@pytest.mark.parametrize("round_to", [1, 4])
def test_removing_silenced_channels_is_exact(name: str, round_to: int) -> None:
    model, x = build(name)
    graph = ep.trace(model, x)
    assert graph.prunable_groups, graph.summary()
    plan = ep.plan(graph, sparsity=0.5, criterion="random", round_to=round_to, seed=3)
    n_before = ep.count_params(model)
    assert max_output_change(model, plan, x) < 1e-5
    assert ep.count_params(model) < n_before


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pruned_model_keeps_train_and_eval_forward(name: str) -> None:
    model, x = build(name)
    ep.prune(model, x, sparsity=0.4)
    for mode in (True, False):
        model.train(mode)
        out = model(x)
        assert all(torch.isfinite(t).all() for t in outputs(out))


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_params_and_flops_never_grow_with_sparsity(name: str) -> None:
    base, x = build(name)
    graph = ep.trace(base, x)
    for round_to in (1, 8):
        prev = (ep.count_params(base), ep.count_flops(base, x))
        for s in (0.1, 0.3, 0.5, 0.7, 0.9):
            model, _ = build(name)
            ep.apply(model, ep.plan(graph, sparsity=s, round_to=round_to))
            now = (ep.count_params(model), ep.count_flops(model, x))
            assert now[0] <= prev[0] and now[1] <= prev[1], (round_to, s, prev, now)
            prev = now


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_plan_replays_on_fresh_instance(name: str) -> None:
    model, x = build(name, seed=1)
    first = ep.plan(ep.trace(model, x), sparsity=0.3, round_to=2)
    second = ep.plan(ep.trace(ep.apply(model, first), x), sparsity=0.3)
    ep.apply(model, second)
    plan = first.then(second)
    fresh, _ = build(name, seed=2)
    ep.apply(fresh, ep.PruningPlan.from_json(plan.to_json()))
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        a, b = model(x), fresh(x)
    assert len(outputs(a)) == len(outputs(b))
    for ta, tb in zip(outputs(a), outputs(b)):
        assert torch.equal(ta, tb)


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_group_ids_are_stable_across_retrace_and_pruning(name: str) -> None:
    model, x = build(name)
    ids = [g.id for g in ep.trace(model, x).groups]
    assert ids == [g.id for g in ep.trace(build(name)[0], x).groups]
    ep.prune(model, x, sparsity=0.5)
    assert ids == [g.id for g in ep.trace(model, x).groups]


def test_pattern_graph_structure() -> None:
    # SPPF: cv1's channels appear four times in cv2's input (x, y1, y2, y3)
    g = ep.trace(*build("sppf"))
    cv1 = g.group("cv1.0")
    assert cv1.prunable and cv1.channels == 8
    assert any(m.param == "cv2.0.weight" and m.role == "in" and m.size == 32 for m in cv1.members)
    # C2f chunk: the two halves are coupled, so cv1's 32 filters are 16 removable units
    g = ep.trace(*build("c2f_split_slice"))
    assert g.group("a.cv1.0").channels == 16
    # detection output convs and classifier heads are excluded automatically
    assert not ep.trace(*build("shape_branch_head")).group("out").prunable
    assert not ep.trace(*build("residual")).group("fc").prunable
    # the implicit addition parameter is sliced with the channels it is added to
    g = ep.trace(*build("shape_branch_head"))
    assert any(m.param == "ia" and m.dim == 1 for m in g.group("body.1.0").members)
    # flatten -> Linear: each channel spans H*W columns of fc1
    g = ep.trace(*build("flatten_linear"))
    assert any(m.param == "fc1.weight" and m.size == 12 * 16 for m in g.group("features.2.0").members)
    # transposed conv: its output channels are dim 1 of its weight; PReLU slopes follow them
    g = ep.trace(*build("unet_deconv_dict"))
    roles = {(m.param, m.dim, m.role) for m in g.group("up").members}
    assert {("up.weight", 1, "out"), ("act.weight", 0, "param"), ("d1.0.weight", 1, "in")} <= roles
    assert ("up.weight", 0, "in") in {(m.param, m.dim, m.role) for m in g.group("e2.0").members}
    assert g.group("e2.0").prunable and not g.group("aux").prunable
