"""The shipped demo model loads, is small, and actually detects the synthetic defects."""

from __future__ import annotations

import pytest
import torch

from edgeprune.errors import EdgepruneError
from edgeprune.models import demo as demo_mod
from edgeprune.models import demo_model

# one torch thread: the same arithmetic everywhere, restored after each test (conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_missing_weights_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(demo_mod, "DEMO_WEIGHTS", tmp_path / "nope.pt")
    with pytest.raises(EdgepruneError, match="train_demo_model.py"):
        demo_model()


def test_demo_model_loads_with_contract_attributes():
    info = demo_mod.demo_model_info()
    assert demo_mod.DEMO_WEIGHTS.stat().st_size <= 25 * 2**20
    model = demo_model()
    assert not model.training
    assert model.names == ["scratch", "dent", "stain", "crack", "missing_hole"] == info["names"]
    assert model.num_classes == 5 and model.img_size == info["img_size"]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp16 on disk, fp32 in memory
    for key in ("training", "evaluation"):
        assert key in info, key
    assert info["evaluation"]["metrics"]["mAP50"] > 0.1


def test_demo_model_detects_defects_on_fresh_val_images(tmp_path):
    from edgeprune.data.synthetic import generate
    from edgeprune.evaluation import DetectionEvaluator

    info = demo_mod.demo_model_info()
    h, w = info["data"]["gen_size"]
    # the first images of the fixed val set (seed 1): image i depends only on (seed, i)
    val = generate(tmp_path / "val", 24, seed=1, img_size=(h, w), progress=False)
    model = demo_model()
    metrics = DetectionEvaluator(val, model.img_size)(model)
    assert metrics["mAP50"] > 0.1, metrics
    assert 0 < metrics["mAP50-95"] <= metrics["mAP50"]
