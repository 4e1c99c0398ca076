"""Every prune is verified: forwards that read channel counts the trace cannot see are refused (model
unchanged), plans carry a dataflow fingerprint and a digest, apply is all-or-nothing, and plan
arguments (exclude typos, round_to, sparsity) are checked."""

from __future__ import annotations

import copy
import json
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import edgeprune as ep
from edgeprune.errors import InvalidConfigError, InvalidPlanError, PruneVerificationError

X = torch.rand(1, 3, 8, 8)


class _Base(nn.Module):
    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.c = c
        self.a = nn.Conv2d(3, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)
        self.out = nn.Conv2d(c, 4, 1)

    def features(self, x):
        return F.relu(self.b(F.relu(self.a(x))))


class BranchOnChannels(_Base):
    def forward(self, x):
        y = self.features(x)
        if y.shape[1] == 16:
            y = y * 2.0
        return self.out(y)


class DivideByChannels(_Base):
    def forward(self, x):
        y = self.features(x)
        return self.out(y / y.shape[1])


class ViewWithStoredCount(_Base):
    def forward(self, x):
        y = self.features(x)
        n, _, h, w = y.shape
        z = y.view(n, self.c, -1).softmax(-1)  # per-channel spatial softmax, with the stored count
        return self.out(z.view(n, -1, h, w))


class Plain(_Base):
    def forward(self, x):
        return self.out(self.features(x))


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a, b) -> bool:
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("cls", [BranchOnChannels, DivideByChannels])
def test_prune_refuses_forward_reading_channel_counts_and_leaves_model_unchanged(cls):
    torch.manual_seed(0)
    model = cls()
    before = _state(model)
    with torch.no_grad():
        y_before = model.eval()(X)
    with pytest.raises(PruneVerificationError, match="channel count"):
        ep.prune(model, X, sparsity=0.5)
    assert _same_state(before, model.state_dict())
    assert model.b.out_channels == 16 and model.b.weight.shape[0] == 16
    with torch.no_grad():
        assert torch.equal(model(X), y_before)  # still the same function


def test_view_with_a_stored_count_prunes_and_updates_the_attribute():
    # the trace sees the count passed to view() and that the module attribute `c` holds it
    torch.manual_seed(0)
    model = ViewWithStoredCount()
    ep.prune(model, X, sparsity=0.5)
    assert model.c == model.b.out_channels == 8


def test_verification_is_switched_off_only_explicitly():
    torch.manual_seed(0)
    model = DivideByChannels()
    ep.prune(model, X, sparsity=0.5, verify=False)  # the user's explicit choice
    assert model.b.weight.shape[0] == 8
    with pytest.raises(InvalidPlanError, match="verify"):
        ep.apply(Plain(), ep.plan(ep.trace(Plain(), X), sparsity=0.5), X, verify="no")


def test_apply_with_example_inputs_verifies_and_plain_model_passes():
    torch.manual_seed(0)
    model = Plain()
    ref = copy.deepcopy(model)
    plan = ep.plan(ep.trace(model, X), sparsity=0.5)
    ep.apply(model, plan, X)
    assert model.b.weight.shape[0] == 8
    bad = DivideByChannels()
    bad.load_state_dict(ref.state_dict())
    with pytest.raises(PruneVerificationError):
        ep.apply(bad, plan, X)
    assert bad.b.weight.shape[0] == 16


class Swapped(nn.Module):
    """Same parameter names and shapes as ``Concat``, but the concatenation order is reversed."""

    def __init__(self, swap: bool = False) -> None:
        super().__init__()
        self.swap = swap
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 8, 1)
        self.out = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        pa, pb = self.a(x), self.b(x)
        return self.out(torch.cat([pb, pa] if self.swap else [pa, pb], 1))


def test_plan_of_another_dataflow_is_refused_before_touching_the_model():
    plan = ep.plan(ep.trace(Swapped(), X), rates={"a": 0.5})
    other = Swapped(swap=True)
    before = _state(other)
    with pytest.raises(InvalidPlanError, match="different dataflow"):
        ep.apply(other, plan, X)
    assert _same_state(before, other.state_dict())
    ep.apply(Swapped(), plan, X)  # the model it was made for


def test_hand_edited_index_is_refused():
    plan = ep.plan(ep.trace(Plain(), X), sparsity=0.5)
    data = json.loads(plan.to_json())
    entry = next(p for p in data["steps"][0]["params"] if p["role"] == "in")
    entry["remove"][0] = next(i for i in range(entry["size"]) if i not in entry["remove"])
    with pytest.raises(InvalidPlanError, match="edited"):
        ep.PruningPlan.from_json(json.dumps(data))
    del data["steps"][0]["digest"]
    with pytest.raises(InvalidPlanError, match="digest"):
        ep.PruningPlan.from_json(json.dumps(data))


def test_multi_step_apply_is_all_or_nothing():
    model = Plain()
    first = ep.plan(ep.trace(model, X), rates={"a": 0.5})
    pruned = ep.apply(copy.deepcopy(model), first)
    second = ep.plan(ep.trace(pruned, X), rates={"b": 0.5})
    both = first.then(second)
    # a later step that does not fit: the second step of a plan made for a wider 'b'
    wrong_second = ep.plan(ep.trace(Plain(c=32), torch.rand(1, 3, 8, 8)), rates={"b": 0.5})
    bad = ep.PruningPlan(first.steps + wrong_second.steps)
    before = _state(model)
    with pytest.raises(InvalidPlanError, match="plan step 1"):
        ep.apply(model, bad)
    assert _same_state(before, model.state_dict()) and model.a.out_channels == 16
    # verified path: the second step fails the output check -> the first is rolled back too
    ch = DivideByChannels()
    ch.load_state_dict(model.state_dict())
    only_b = ep.PruningPlan(second.steps)
    ep.apply(ch, ep.PruningPlan(first.steps), X)  # 'a' is consumed by 'b' only: passes
    with pytest.raises(PruneVerificationError):
        ep.apply(ch, only_b, X)
    assert ch.b.weight.shape[0] == 16 and ch.a.weight.shape[0] == 8
    ep.apply(model, both, X)
    assert model.a.weight.shape[0] == 8 and model.b.weight.shape[0] == 8


def test_exclude_typo_names_close_matches():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))
            self.out = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.out(self.a(x))

    g = ep.trace(Seq(), X)
    with pytest.raises(InvalidConfigError, match="did you mean 'a.0'"):
        ep.plan(g, sparsity=0.5, exclude=["a0"])
    with pytest.raises(InvalidConfigError, match="a0"):
        ep.prune(Seq(), X, sparsity=0.5, exclude=["a0"])
    with pytest.raises(InvalidConfigError, match="did you mean 'a.0'"):
        ep.trace(Seq(), X, exclude=["a0"])
    assert "a.0" not in ep.plan(g, sparsity=0.5, exclude=["a.0"]).groups
    assert ep.plan(g, sparsity=0.5, exclude=["a"]).groups == {}  # a prefix names a whole block


def test_round_to_above_group_channels_warns_instead_of_pruning_nothing_silently():
    g = ep.trace(Plain(c=4), X)
    with pytest.warns(UserWarning, match="round_to=8 is above the channel count"):
        p = ep.plan(g, sparsity=0.5, round_to=8)
    assert p.groups == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ep.plan(g, sparsity=0.5, round_to=2)  # fits: no warning


@pytest.mark.parametrize("bad", [True, False, "0.5", None, float("nan"), [0.5]])
def test_sparsity_must_be_a_real_number(bad):
    g = ep.trace(Plain(), X)
    with pytest.raises(InvalidConfigError):
        ep.plan(g, sparsity=bad) if bad is not None else ep.plan(g, rates={"a": True})
