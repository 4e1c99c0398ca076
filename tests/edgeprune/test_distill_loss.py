"""Properties of the distillation loss and of labels + distillation combined (fast, small tensors)."""

from __future__ import annotations

import copy

import pytest
import torch

from edgeprune.models import yolov7_tiny
from edgeprune.training.distill import DistillObjective
from edgeprune.training.finetune import LabeledObjective

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _outputs(seed: int, obj_logit: float = 0.0):
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(2, 3, s, s, 5 + 4, generator=g) for s in (4, 2)]
    for o in outs:
        o[..., 4] += obj_logit
    return outs


def test_zero_at_the_teacher_and_positive_elsewhere():
    kd = DistillObjective(torch.nn.Identity())
    t = _outputs(0)
    loss, parts = kd.loss([x.clone() for x in t], t)
    assert float(loss) == pytest.approx(0.0, abs=1e-5)
    other, _ = kd.loss(_outputs(1), t)
    assert float(other) > 0.1
    # further away costs more: a student halfway to the teacher is closer
    s = _outputs(1)
    half, _ = kd.loss([(a + b) / 2 for a, b in zip(s, t)], t)
    assert 0 < float(half) < float(other)


def test_box_and_class_terms_only_count_where_the_teacher_sees_objects():
    kd = DistillObjective(torch.nn.Identity())
    t = _outputs(0, obj_logit=-30.0)  # the teacher sees no object anywhere
    t[0][0, 0, 1, 1, 4] = 30.0  # ... except in one cell
    s = [x.clone() for x in t]
    s[1][..., :4] += 3.0  # boxes and classes wrong wherever the teacher sees nothing
    s[1][..., 5:] -= 3.0
    _, bg = kd.loss(s, t)
    assert bg["box"] < 1e-4 and bg["cls"] < 1e-4
    s[0][0, 0, 1, 1, :4] += 3.0  # wrong box in the object cell: counted fully
    _, fg = kd.loss(s, t)
    assert fg["box"] > 0.01


def test_labels_plus_distillation_adds_the_teacher_term_and_spares_the_teacher():
    torch.manual_seed(0)
    teacher = yolov7_tiny(num_classes=3).eval()
    student = copy.deepcopy(teacher).train()
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    images = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 0.5, 0.5, 0.3, 0.3], [1, 2, 0.3, 0.6, 0.2, 0.4]])
    plain, _ = LabeledObjective(student, 64)(student, (images, targets))
    combined, parts = LabeledObjective(student, 64, teacher=teacher, distill=2.0)(student, (images, targets))
    kd, _ = DistillObjective(teacher)(student, images)
    # the distillation term is scaled like the YOLO loss (x batch size) and weighted by `distill`
    assert float(combined) == pytest.approx(float(plain) + 2.0 * 2 * float(kd), rel=1e-4)
    assert {"kd_box", "kd_obj", "kd_cls"} <= set(parts)
    combined.backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())
    zero, _ = LabeledObjective(student, 64, teacher=teacher, distill=0.0)(student, (images, targets))
    assert float(zero) == pytest.approx(float(plain), rel=1e-6)
