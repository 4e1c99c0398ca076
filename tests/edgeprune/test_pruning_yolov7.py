"""The pruning core on the built-in YOLOv7 models (RepConv, IDetect with ImplicitA/M)."""

from __future__ import annotations

import pytest
import torch
from pruning_helpers import randomize_norms  # tests/edgeprune is on pytest's pythonpath
from torch import nn

import edgeprune as ep
from edgeprune.pruning.verify import max_output_change


def _build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return randomize_norms(getattr(ep.models, name)(num_classes=3), std=0.1)


X = torch.rand(1, 3, 128, 128)


@pytest.mark.parametrize("name, prunable", [("yolov7_tiny", 55), ("yolov7", 89)])
def test_graph_matches_the_paper(name: str, prunable: int) -> None:
    g = ep.trace(_build(name), X)
    assert len(g.prunable_groups) == prunable  # the paper's hand-written graphs: 55 and 89 layers
    for i in range(3):
        out = g.group(f"detect.m.{i}")
        assert not out.prunable and out.reason == "reaches a model output"
        assert any(m.param == f"detect.im.{i}.implicit" for m in out.members)
        # ImplicitA is added to the output conv's input: it is sliced with that group
        assert sum(m.param == f"detect.ia.{i}.implicit" for g2 in g.prunable_groups for m in g2.members) == 1
    if name == "yolov7":
        rep = [grp for grp in g.groups if len(grp.modules) == 2]
        assert len(rep) == 3 and all("rbr_dense" in grp.modules[0] and "rbr_1x1" in grp.modules[1]
                                     for grp in rep)


@pytest.mark.parametrize("name", ["yolov7_tiny", pytest.param("yolov7", marks=pytest.mark.slow)])
def test_yolov7_pruning_is_exact_and_replays(name: str) -> None:
    model = _build(name)
    plan = ep.plan(ep.trace(model, X), sparsity=0.5, criterion="random", round_to=8)
    p0, f0 = ep.count_params(model), ep.count_flops(model, X)
    assert max_output_change(model, plan, X) < 1e-5
    assert ep.count_params(model) < 0.4 * p0 and ep.count_flops(model, X) < 0.4 * f0
    fresh = ep.apply(_build(name, seed=1), ep.PruningPlan.from_json(plan.to_json()))
    fresh.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(X), model(X))
    model.train()
    raw = model(X)
    assert [t.shape[-1] for t in raw] == [8, 8, 8]  # 5 + num_classes, head intact


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_pruned_tiny_exports_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = ep.prune(_build("yolov7_tiny"), X, sparsity=0.6, round_to=8)
    path = tmp_path / "pruned.onnx"
    torch.onnx.export(model, (X,), str(path), input_names=["images"], output_names=["output"],
                      opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"images": X.numpy()})[0]
    with torch.no_grad():
        ref = model(X).numpy()
    assert got.shape == ref.shape and abs(got - ref).max() < 1e-3 * max(1.0, abs(ref).max())


@pytest.mark.slow
def test_flops_match_published_yolov7_tiny() -> None:
    model = ep.models.yolov7_tiny(num_classes=80)
    gflops = ep.count_flops(model, torch.zeros(1, 3, 640, 640)) / 1e9
    assert abs(gflops - 13.7) < 0.05  # published: 13.7 GFLOPs at 640
