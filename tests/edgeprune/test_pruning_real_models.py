"""The reference models themselves (YOLO11n from its YAML, torchvision's ShuffleNetV2 and ConvNeXt)
prune exactly. Runs where Ultralytics and torchvision import (.venv-ultralytics); skipped elsewhere.
No weights are downloaded: the models are built with random weights."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported: no network checks
torchvision = pytest.importorskip("torchvision", reason="needs torchvision (installed in .venv-ultralytics)")

import torch  # noqa: E402

import edgeprune as ep  # noqa: E402
from edgeprune.pruning.verify import max_output_change  # noqa: E402


def _yolo11n():
    tasks = pytest.importorskip("ultralytics.nn.tasks", reason="needs the 'ultralytics' extra")
    return tasks.DetectionModel("yolo11n.yaml", verbose=False)


MODELS = {
    "yolo11n": (_yolo11n, 160),
    "shufflenet_v2_x0_5": (lambda: torchvision.models.shufflenet_v2_x0_5(), 64),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(), 64),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("sparsity, round_to", [(0.3, 1), (0.5, 8)])
def test_reference_model_prunes_exactly(name: str, sparsity: float, round_to: int) -> None:
    factory, size = MODELS[name]
    torch.manual_seed(0)
    model, x = factory().eval(), torch.rand(1, 3, size, size)
    graph = ep.trace(model, x)
    assert len(graph.prunable_groups) > 10, graph.summary()
    plan = ep.plan(graph, sparsity=sparsity, round_to=round_to, criterion="random", seed=1)
    n_before = ep.count_params(model)
    assert max_output_change(model, plan, x) < 1e-5
    assert ep.count_params(model) < 0.9 * n_before


def test_yolo11n_keeps_its_attention_and_prunes_around_it() -> None:
    model, x = _yolo11n().eval(), torch.rand(1, 3, 160, 160)
    graph = ep.trace(model, x)
    qkv = graph.group("model.10.m.0.attn.qkv.conv")
    assert not qkv.prunable and "channel count of another tensor" in qkv.reason
    assert graph.group("model.10.m.0.ffn.0.conv").prunable
    ep.prune(model, x, sparsity=0.5, round_to=8)
    assert model.model[10].m[0].ffn[0].conv.out_channels == 128
