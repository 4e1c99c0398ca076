"""YOLOv7 loss: CIoU, target assignment on a hand-built case, and that training lowers the loss."""

from __future__ import annotations

import math

import pytest
import torch

from edgeprune.errors import InvalidConfigError, InvalidModelError
from edgeprune.models import yolov7_tiny
from edgeprune.training import LabeledFinetune, TrainConfig, YoloLoss, bbox_ciou
from edgeprune.training.trainer import lr_factor, param_groups

# one torch thread: the same arithmetic everywhere, restored after each test (conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_ciou_identical_overlapping_and_disjoint():
    a = torch.tensor([[10.0, 10.0, 4.0, 4.0]])
    assert bbox_ciou(a, a).item() == pytest.approx(1.0, abs=1e-5)
    shifted = torch.tensor([[11.0, 10.0, 4.0, 4.0]])
    iou = 3 * 4 / (16 + 16 - 12)
    # same shape: no aspect term; centre distance 1, enclosing box 5 x 4
    assert bbox_ciou(a, shifted).item() == pytest.approx(iou - 1 / (25 + 16), abs=1e-4)
    far = torch.tensor([[30.0, 30.0, 4.0, 4.0]])
    assert bbox_ciou(a, far).item() < 0  # disjoint boxes still get a (negative) gradient signal


def _preds(img: int, nc: int = 5) -> list[torch.Tensor]:
    return [torch.zeros(1, 3, img // s, img // s, 5 + nc) for s in (8, 16, 32)]


def test_assignment_hand_built_case():
    model = yolov7_tiny(num_classes=5)
    loss = YoloLoss(model, img_size=128)
    # one 40x40 px box centred at (38.4, 70.4) px in a 128 px image, class 2
    targets = torch.tensor([[0, 2, 0.30, 0.55, 40 / 128, 40 / 128]])
    tcls, tbox, indices, anchors = loss.build_targets(_preds(128), targets)
    # anchors (px) of yolov7-tiny: ratio test max(r, 1/r) < 4 on both sides
    # L0 (10,13) ratio 4.0 fails; (16,30) and (33,23) match. L1: all three match.
    # L2: (116,90) matches; (156,198) and (373,326) exceed 4.
    matched = {0: [1, 2], 1: [0, 1, 2], 2: [0]}
    # centre cells and the two nearest neighbours (centre offset g = 0.5), as (gi, gj)
    cells = {
        0: [(4, 8), (5, 8), (4, 9)],  # gxy = (4.8, 8.8): right and lower halves -> right, down
        1: [(2, 4), (1, 4), (2, 3)],  # gxy = (2.4, 4.4): left and upper halves -> left, up
        2: [(1, 2), (0, 2), (1, 1)],  # gxy = (1.2, 2.2)
    }
    for level in range(3):
        b, a, gj, gi = indices[level]
        got = sorted(zip(a.tolist(), gi.tolist(), gj.tolist()))
        want = sorted((an, ci, cj) for an in matched[level] for ci, cj in cells[level])
        assert got == want, f"level {level}"
        assert (b == 0).all() and (tcls[level] == 2).all()
        stride = 8 * 2**level
        gx, gy = 0.30 * 128 / stride, 0.55 * 128 / stride
        size = 40 / stride
        for k, (ai, ci, cj) in enumerate(zip(a.tolist(), gi.tolist(), gj.tolist())):
            # box relative to its cell (-0.5..1.5 for neighbours), size in grid units
            assert tbox[level][k].tolist() == pytest.approx([gx - ci, gy - cj, size, size], abs=1e-5)
            want_anchor = model.detect.anchors[level, ai] / stride
            assert anchors[level][k].tolist() == pytest.approx(want_anchor.tolist())


def test_assignment_empty_targets_and_loss_parts():
    model = yolov7_tiny(num_classes=5)
    loss = YoloLoss(model, img_size=128)
    preds = _preds(128)
    _, _, indices, _ = loss.build_targets(preds, torch.zeros((0, 6)))
    assert all(idx[0].numel() == 0 for idx in indices)
    total, parts = loss(preds, torch.zeros((0, 6)))
    # zero logits, no objects: only objectness BCE = log(2) per level, weighted by balance and gain
    expected = math.log(2) * (4.0 + 1.0 + 0.4) * (128 / 640) ** 2
    assert parts["obj"] == pytest.approx(expected, rel=1e-5)
    assert parts["box"] == 0 and parts["cls"] == 0
    assert total.item() == pytest.approx(expected)  # batch size 1
    with pytest.raises(InvalidModelError):
        loss(preds[0], torch.zeros((0, 6)))


def test_loss_rejects_model_without_head():
    with pytest.raises(InvalidModelError):
        YoloLoss(torch.nn.Conv2d(3, 3, 1))


def test_schedule_and_param_groups():
    cfg = TrainConfig(warmup_steps=10, warmup_start=0.1, final_lr=0.05)
    assert lr_factor(0, 100, cfg) == pytest.approx(0.1)
    assert lr_factor(10, 100, cfg) == pytest.approx(1.0)
    assert lr_factor(100, 100, cfg) == pytest.approx(0.05)
    assert lr_factor(55, 100, cfg) == pytest.approx(0.05 + 0.95 * 0.5)
    model = yolov7_tiny(num_classes=5)
    decay, no_decay = param_groups(model, 5e-4)
    n_decay = sum(p.numel() for p in decay["params"])
    assert all(p.ndim == 4 for p in decay["params"])  # conv weights only
    assert n_decay + sum(p.numel() for p in no_decay["params"]) == sum(p.numel() for p in model.parameters())
    assert no_decay["weight_decay"] == 0.0
    with pytest.raises(InvalidConfigError):
        TrainConfig(optimizer="lion").validate()
    with pytest.raises(InvalidConfigError):
        LabeledFinetune("x", 64, bogus_setting=1)


@pytest.mark.slow
def test_loss_decreases_on_tiny_overfit_set(tmp_path):
    from edgeprune.data.synthetic import generate

    data = generate(tmp_path / "d", 4, seed=3, img_size=(96, 96), progress=False)
    torch.manual_seed(0)
    model = yolov7_tiny(num_classes=5)
    ft = LabeledFinetune(data, 96, batch_size=4, lr=2e-3, augment=False, warmup_steps=5, progress=False)
    ft(model, 40)
    hist = [h["loss"] for h in ft.last_trainer.history]
    assert len(hist) == 40
    first, last = sum(hist[:5]) / 5, sum(hist[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert not model.training  # finetune returns the model in eval mode
