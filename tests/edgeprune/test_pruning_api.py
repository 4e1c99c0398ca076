"""Plan options, criteria, JSON, errors and complexity counts of the pruning core."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from pruning_helpers import Mid, X
from torch import nn

import edgeprune as ep
from edgeprune.errors import (
    InvalidConfigError,
    InvalidModelError,
    InvalidPlanError,
    UnsupportedOperationError,
)
from edgeprune.pruning import kept_channels


class Chain(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.b = nn.Conv2d(c, 24, 3, padding=1)
        self.out = nn.Conv2d(24, 4, 1)

    def forward(self, x):
        return self.out(F.relu(self.b(F.relu(self.bn(self.a(x))))))


class RepConvLike(nn.Module):
    """Two branches whose outputs are added: one group, importance summed over both."""

    def __init__(self) -> None:
        super().__init__()
        self.dense = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.one = nn.Conv2d(3, 4, 1, bias=False)
        self.out = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.out(self.dense(x) + self.one(x))


def test_kept_channels_is_monotone_and_rounded() -> None:
    for n in range(1, 70):
        for m in (1, 2, 4, 8, 16):
            prev = n
            for step in range(0, 101):
                k = kept_channels(n, step / 100, m)
                assert 1 <= k <= prev
                assert k == n or k % m == 0
                prev = k
    assert kept_channels(64, 0.5) == 32
    assert kept_channels(64, 0.3, 8) == 48  # 64 - 19 = 45 -> 48
    assert kept_channels(6, 0.5, 8) == 6  # smaller than one multiple: left alone


def test_round_to_holds_in_the_pruned_model() -> None:
    model = Chain(40)
    ep.prune(model, X, sparsity=0.37, round_to=8)
    assert model.a.out_channels % 8 == 0 and model.b.out_channels % 8 == 0
    assert model.bn.num_features == model.a.out_channels == model.b.in_channels
    assert model.out.out_channels == 4  # output conv untouched


@pytest.mark.parametrize("criterion", ["l2", "l1"])
def test_norm_criteria_remove_smallest_filters(criterion: str) -> None:
    model = Chain()
    with torch.no_grad():
        model.a.weight[[3, 7]] *= 1e-3
    plan = ep.plan(ep.trace(model, X), rates={"a": 2 / 16}, criterion=criterion, round_to=1)
    entry = next(p for p in plan.steps[0]["params"] if p["name"] == "a.weight" and p["dim"] == 0)
    assert entry["remove"] == [3, 7]


def test_bn_gamma_criteria_use_batch_norm_scale() -> None:
    model = Chain()
    with torch.no_grad():
        model.bn.weight.fill_(1.0)
        model.bn.weight[[5]] = 0.01
    for criterion in ("bn_gamma", "bn_gamma_l1"):
        plan = ep.plan(ep.trace(model, X), rates={"a": 1 / 16}, criterion=criterion, round_to=1)
        entry = next(p for p in plan.steps[0]["params"] if p["name"] == "bn.weight")
        assert entry["remove"] == [5]


def test_random_criterion_is_seeded() -> None:
    g = ep.trace(Chain(), X)
    a = ep.plan(g, sparsity=0.5, criterion="random", seed=1)
    assert a == ep.plan(g, sparsity=0.5, criterion="random", seed=1)
    assert a != ep.plan(g, sparsity=0.5, criterion="random", seed=2)


def test_repconv_branches_share_one_group_and_score() -> None:
    model = RepConvLike()
    with torch.no_grad():
        model.dense.weight[1] *= 1e-3  # small in one branch only
        model.one.weight[2] *= 1e-3
        model.dense.weight[2] *= 1e-3  # small in both branches: least important
    g = ep.trace(model, X)
    grp = g.group("dense")
    assert grp.modules == ["dense", "one"] and grp.channels == 4
    plan = ep.plan(g, rates={"dense": 0.25}, round_to=1)
    removed = {p["name"]: p["remove"] for p in plan.steps[0]["params"]}
    assert removed["dense.weight"] == [2] and removed["one.weight"] == [2]


def test_plan_json_round_trip_and_hash() -> None:
    plan = ep.plan(ep.trace(Chain(), X), sparsity=0.5)
    text = plan.to_json()
    again = ep.PruningPlan.from_json(text)
    assert again == plan and again.sha256() == plan.sha256() and len(plan.sha256()) == 64
    assert json.loads(text)["format"] == "edgeprune.pruning_plan"
    for bad in ("not json", "[]", json.dumps({"format": "other"}),
                json.dumps({"format": "edgeprune.pruning_plan", "version": 1, "steps": [{"params": 3}]})):
        with pytest.raises(InvalidPlanError):
            ep.PruningPlan.from_json(bad)


def test_apply_rejects_plans_that_do_not_fit() -> None:
    model = Chain()
    plan = ep.plan(ep.trace(model, X), sparsity=0.5)
    ep.apply(model, plan)
    with pytest.raises(InvalidPlanError, match="plan expects size 16"):
        ep.apply(model, plan)  # already pruned
    with pytest.raises(InvalidPlanError, match="no parameter"):
        ep.apply(RepConvLike(), plan)
    with pytest.raises(InvalidPlanError, match="not made on the pruned model"):
        plan.then(plan)
    graph = ep.trace(model, X)
    ep.prune(model, X, sparsity=0.5)
    with pytest.raises(InvalidPlanError, match="trace it again"):
        ep.plan(graph, sparsity=0.5)


def test_plan_arguments_are_validated() -> None:
    g = ep.trace(Chain(), X)
    with pytest.raises(InvalidConfigError):
        ep.plan(g)
    with pytest.raises(InvalidConfigError):
        ep.plan(g, sparsity=1.5)
    with pytest.raises(InvalidConfigError):
        ep.plan(g, sparsity=0.5, criterion="magic")
    with pytest.raises(InvalidConfigError):
        ep.plan(g, sparsity=0.5, round_to=0)
    with pytest.raises(InvalidPlanError, match="no channel group"):
        ep.plan(g, rates={"nope": 0.5})
    with pytest.raises(InvalidPlanError, match="reaches a model output"):
        ep.plan(g, rates={"out": 0.5})
    with pytest.raises(InvalidModelError):
        ep.trace(Chain(), torch.rand(1, 5, 8, 8))


def test_exclude_by_module_name() -> None:
    g = ep.trace(Chain(), X, exclude=["b"])
    assert not g.group("b").prunable and g.group("a").prunable
    plan = ep.plan(ep.trace(Chain(), X), sparsity=0.5, exclude=["a"])
    assert set(plan.groups) == {"b"}


@pytest.mark.parametrize("op, c_mid, match", [
    (lambda x: x.view(1, 2, 4, 8, 8).transpose(1, 2).reshape(1, 8, 8, 8), 8, "fixed number"),  # literal sizes
    (lambda x: x.view(1, 4, 16, 8), 4, "mixes the channel dim"),  # channels and rows reinterpreted
    (lambda x: x.transpose(1, 2).reshape(1, 64, 8, 1), 64, "mixes the channel dim"),  # rows x channels
    (lambda x: F.softmax(x, 1), 8, "softmax"),
    (lambda x: x.mean(1, keepdim=True), 1, "mean"),
    (lambda x: x[:, 1:], 7, "getitem"),  # literal slice bound, no attribute holds it
    (lambda x: torch.cat(x.split([3, 5], 1)[::-1], 1), 8, "split"),  # literal split sizes
    (lambda x: F.pixel_shuffle(x, 2), 2, "pixel_shuffle"),
    (lambda x: torch.stack([c for c in x[0]])[None], 8, "unbind"),  # iterating over channels
])
def test_unsupported_channel_ops_raise(op, c_mid: int, match: str) -> None:
    model = Mid(op, c_mid)
    with pytest.raises(UnsupportedOperationError, match=match) as err:
        ep.trace(model, X)
    assert "'a'" in str(err.value) or "group 'a'" in str(err.value)
    ep.trace(model, X, exclude=["a"])  # leaving the group unpruned is fine


class LiteralSplit(nn.Module):
    """split(4) is a literal; an unrelated attribute that happens to equal 4 must not be taken for it."""

    def __init__(self) -> None:
        super().__init__()
        self.unrelated = 4
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(torch.cat(self.a(x).split(4, 1)[::-1], 1))


class AttrSplit(LiteralSplit):
    def forward(self, x):
        return self.b(torch.cat(self.a(x).split(self.unrelated, 1)[::-1], 1))


def test_split_size_attribute_must_be_read_by_forward() -> None:
    with pytest.raises(UnsupportedOperationError, match="Python literal"):
        ep.trace(LiteralSplit(), X)
    model = AttrSplit()
    plan = ep.plan(ep.trace(model, X), sparsity=0.5, criterion="random", round_to=1)
    assert {"module": "", "attr": "unrelated", "old": 4, "new": 2, "type": "int"} in plan.steps[0]["attrs"]
    from edgeprune.pruning.verify import max_output_change

    assert max_output_change(model, plan, X) < 1e-5 and model.unrelated == 2


def test_ops_on_other_axes_pass() -> None:
    model = Mid(lambda x: F.softmax(x.flatten(2), -1).view_as(x) * x, 8)
    g = ep.trace(model, X)
    assert g.group("a").prunable


def test_grouped_conv_channels_are_left_alone() -> None:
    model = Mid(nn.Conv2d(8, 8, 3, padding=1, groups=2))
    g = ep.trace(model, X)
    assert not g.group("a").prunable and "grouped" in g.group("a").reason
    assert not g.group("op").prunable


@pytest.mark.parametrize("groups", [2, 8])  # 8: depthwise-shaped, but a transposed conv is never coupled
def test_grouped_transposed_conv_channels_are_left_alone(groups: int) -> None:
    model = Mid(nn.ConvTranspose2d(8, 8, 3, padding=1, groups=groups))
    g = ep.trace(model, X)
    assert not g.group("a").prunable and "grouped transposed convolution" in g.group("a").reason
    assert not g.group("op").prunable and "grouped transposed convolution 'op'" in g.group("op").reason
    plain = ep.trace(Mid(nn.ConvTranspose2d(8, 8, 3, padding=1)), X)
    assert plain.group("a").prunable and plain.group("op").prunable


def test_forward_needing_real_values_is_traced_for_real() -> None:
    class DataDependent(Chain):
        devices: list[str] = []

        def forward(self, x):
            self.devices.append(x.device.type)
            y = F.relu(self.bn(self.a(x)))
            if float(self.bn.running_var[0]) > 0:  # needs values: impossible on the meta device
                y = y * 2
            return self.out(F.relu(self.b(y)))

    model = DataDependent()
    g = ep.trace(model, X)
    assert DataDependent.devices == ["meta", "cpu"]
    assert g.group("a").prunable and g.group("b").prunable
    from edgeprune.pruning.verify import max_output_change

    assert max_output_change(model, ep.plan(g, sparsity=0.5, criterion="random"), X) < 1e-5


def test_count_params_and_flops() -> None:
    model = Chain()
    # by hand: conv a (16*3*9 + 16), bn (2*16), conv b (24*16*9 + 24), conv out (4*24 + 4)
    assert ep.count_params(model) == (16 * 27 + 16) + 32 + (24 * 144 + 24) + (4 * 24 + 4)
    tied = nn.Sequential(model.a, model.a)  # one module used twice: its parameters count once
    assert ep.count_params(tied) == 16 * 27 + 16
    x = torch.rand(1, 3, 8, 8)
    macs = 64 * (16 * 3 * 9 + 24 * 16 * 9 + 4 * 24)
    assert ep.count_flops(model, x) == 2 * macs
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert ep.count_flops(lin, torch.rand(2, 3, 4)) == 2 * 2 * 12 * 5
