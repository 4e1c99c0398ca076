"""Channels through reshapes: attention heads, channel shuffle, channels-last LayerNorm.

Whole small networks (YOLO11's C2PSA, ShuffleNetV2, ConvNeXt, written as their reference code)
are pruned exactly: removing channels whose consumers were zeroed leaves the outputs unchanged.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from pruning_helpers import Mid, X, build_net
from reshape_models import (
    AttentionV84,
    ConvNeXt,
    HeadsNet,
    MiniYOLO11,
    ShuffleNetV2,
    channel_shuffle,
)
from torch import nn

import edgeprune as ep
from edgeprune.errors import UnsupportedOperationError
from edgeprune.pruning.verify import max_output_change

NETS = {
    "yolo11_c2psa": (MiniYOLO11, 32),
    "yolo11_c2psa_v84": (lambda: MiniYOLO11(AttentionV84), 32),
    "heads_attention": (HeadsNet, 16),
    "shufflenetv2": (ShuffleNetV2, 32),
    "convnext": (ConvNeXt, 32),
}


def build(name: str, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A network with non-trivial normalisation statistics, in eval mode, and its example input."""
    return build_net(NETS, name, seed)


def outputs(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("round_to", [1, 4])
def test_removing_silenced_channels_is_exact(name: str, sparsity: float, round_to: int) -> None:
    model, x = build(name)
    graph = ep.trace(model, x)
    assert graph.prunable_groups, graph.summary()
    plan = ep.plan(graph, sparsity=sparsity, criterion="random", round_to=round_to, seed=5)
    n_before = ep.count_params(model)
    assert max_output_change(model, plan, x) < 1e-5
    assert ep.count_params(model) < n_before


@pytest.mark.parametrize("name", sorted(NETS))
def test_pruned_network_runs_and_its_plan_replays(name: str) -> None:
    model, x = build(name, seed=1)
    plan = ep.plan(ep.trace(model, x), sparsity=0.5, round_to=2)
    ep.apply(model, plan)
    for mode in (True, False):
        model.train(mode)
        assert all(torch.isfinite(t).all() for t in outputs(model(x)))
    model.eval()
    fresh, _ = build(name, seed=2)
    ep.apply(fresh, ep.PruningPlan.from_json(plan.to_json()))
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        for a, b in zip(outputs(model(x)), outputs(fresh(x))):
            assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["yolo11_c2psa", "yolo11_c2psa_v84"])
def test_yolo11_attention_is_kept_and_pruned_around(name: str) -> None:
    # Ultralytics sizes the attention output with the *input's* channel count (view(B, C, H, W)):
    # heads and the PSA residual stream must keep equal counts, so both stay; the FFN and the
    # layers around C2PSA prune.
    graph = ep.trace(*build(name))
    for gid in ("psa.m.0.attn.qkv.conv", "psa.cv1.conv"):
        g = graph.group(gid)
        assert not g.prunable and "channel count of another tensor" in g.reason, (gid, g.reason)
    assert graph.group("psa.m.0.attn.qkv.conv").channels == 2  # coupled into whole heads
    for gid in ("psa.m.0.ffn.0.conv", "psa.cv2.conv", "sppf.cv1.conv"):
        assert graph.group(gid).prunable
    model, x = build(name)
    ep.prune(model, x, sparsity=0.5)
    assert model.psa.m[0].ffn[0].conv.out_channels == 128 and model.psa.m[0].attn.num_heads == 2


def test_attention_with_following_sizes_prunes_whole_heads() -> None:
    model, x = build("heads_attention")
    g = ep.trace(model, x).group("attn.qkv.conv")
    assert g.prunable and g.channels == 4  # 4 heads of q, k (8 each) and v (16)
    members = {(m.param, m.role): m.size for m in g.members}
    assert members[("attn.qkv.conv.weight", "out")] == 128
    assert members[("attn.proj.conv.weight", "in")] == 64 and members[("attn.pe.conv.weight", "dw")] == 64
    with torch.no_grad():
        before = model(x).shape
    ep.prune(model, x, sparsity=0.5, round_to=1)  # 4 heads: any rounding above 1 keeps them all
    attn = model.attn
    assert attn.num_heads == 2 and attn.qkv.conv.out_channels == 64 and attn.proj.conv.in_channels == 32
    assert model(x).shape == before


class Shuffle(nn.Module):
    def __init__(self, groups: int = 2) -> None:
        super().__init__()
        self.groups = groups
        self.a = nn.Conv2d(3, 12, 1)
        self.b = nn.Conv2d(12, 5, 1)

    def forward(self, x):
        return self.b(channel_shuffle(self.a(x), 3))


def test_channel_shuffle_removes_the_same_positions_from_every_group() -> None:
    torch.manual_seed(0)
    model, x = Shuffle(), torch.rand(2, 3, 8, 8)
    graph = ep.trace(model, x)
    g = graph.group("a")
    assert g.prunable and g.channels == 4  # 3 groups of 4: a unit is one position in every group
    plan = ep.plan(graph, sparsity=0.5, round_to=1)
    removed = sorted(next(p["remove"] for p in plan.steps[0]["params"] if p["name"] == "a.weight"))
    assert len(removed) == 6 and len({r % 4 for r in removed}) == 2 and len({r // 4 for r in removed}) == 3
    assert max_output_change(model, plan, x) < 1e-5


def test_convnext_layer_norm_keeps_normalized_channels_and_prunes_the_mlp() -> None:
    model, x = build("convnext")
    graph = ep.trace(model, x)
    stem = graph.group("features.0.0")
    assert not stem.prunable and "layer norm" in stem.reason
    assert ("features.0.1.weight", 0, "param") in {(m.param, m.dim, m.role) for m in stem.members}
    hidden = graph.group("features.1.0.block.3")
    assert hidden.prunable and hidden.channels == 64
    assert graph.group("features.4.pwconv1").prunable  # channels-last variant with gamma
    ep.prune(model, x, sparsity=0.5)
    block = model.features[1][0].block
    assert block[3].out_features == 32 and block[5].in_features == 32


@pytest.mark.parametrize("op, c_mid, match", [
    (lambda x: x.view(x.shape[0], x.shape[1] // 2, 2 * x.shape[2], -1), 4, "mixes the channel dim"),
    (lambda x: x.view(1, 2, 4, 8, 8).transpose(1, 2).reshape(1, -1, 8, 8), 8, "fixed number"),
    (lambda x: x.view(1, 8, 64).view(1, 8, 8, 8), 8, "fixed number"),
    (lambda x: (x.flatten(2) @ x.flatten(2).transpose(1, 2))[..., None], 8, "channels on two dims"),
    (lambda x: (x.flatten(2).transpose(1, 2) @ torch.ones(8, 8)).transpose(1, 2).reshape(x.shape), 8,
     "sums over the channel dim"),
    (lambda x: x.view(x.size(0), 4, -1, 8, 8).sum(2), 4, "sum"),  # reduction over split channels
])
def test_unsupported_reshapes_raise_naming_the_fix(op, c_mid: int, match: str) -> None:
    model = Mid(op, c_mid)
    with pytest.raises(UnsupportedOperationError, match=match) as err:
        ep.trace(model, X)
    assert "exclude=['a']" in str(err.value)
    ep.trace(model, X, exclude=["a"])  # leaving the group unpruned is fine


@pytest.mark.parametrize("op", [
    lambda x: x.view(x.shape[0], x.shape[1], -1).softmax(-1).view(x.shape),
    lambda x: x.flatten(2).transpose(1, 2).reshape(x.shape[0], -1, x.shape[1]).permute(0, 2, 1).unflatten(
        2, (8, 8)),
    lambda x: F.layer_norm(x.permute(0, 2, 3, 1), (8,)).permute(0, 3, 1, 2) + x,  # channels stay, frozen
    lambda x: x.view(x.size(0), 4, -1, 8, 8).transpose(1, 2).reshape(x.size(0), -1, 8, 8),  # positions
])
def test_supported_reshapes_are_exact(op) -> None:
    torch.manual_seed(0)
    model = Mid(op)
    graph = ep.trace(model, X)
    plan = ep.plan(graph, sparsity=0.5)
    assert max_output_change(model, plan, X) < 1e-5


def test_channel_count_read_from_another_tensor_keeps_both() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)
            self.b, self.d = nn.Conv2d(8, 4, 1), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.a(x)
            z = self.c(x).flatten(2).view(x.shape[0], y.shape[1], 8, 8)  # c's view sized by a
            return self.b(y) + self.d(z)

    graph = ep.trace(Tied(), X)
    for gid in ("a", "c"):
        assert not graph.group(gid).prunable and "another tensor" in graph.group(gid).reason


def test_op_needing_the_other_coupling_freezes_the_split() -> None:
    # a shuffle can only remove the same positions from both groups; a softmax inside each group
    # needs whole groups, so the channels stay (understood, not an error)
    model = Mid(lambda x: x.view(x.size(0), 2, -1, 8, 8).softmax(2).view(x.size(0), -1, 8, 8))
    g = ep.trace(model, X).group("a")
    assert not g.prunable and "mixes values inside each block" in g.reason
