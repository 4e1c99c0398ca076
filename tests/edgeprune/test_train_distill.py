"""Distillation: a perturbed (and a pruned) student moves toward its teacher's outputs."""

from __future__ import annotations

import copy

import pytest
import torch

from edgeprune.errors import InvalidModelError
from edgeprune.models import yolov7_tiny
from edgeprune.training import DistillFinetune, DistillObjective, raw_head_outputs
from edgeprune.training.trainer import recalibrate_bn

# one torch thread: the same arithmetic everywhere, restored after each test (conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMG = 64


@pytest.fixture(scope="module")
def images_dir(synthetic_data):
    return synthetic_data(8, seed=5, img_size=(IMG, IMG)) / "images"


@pytest.fixture(scope="module")
def teacher(images_dir):
    """A random teacher whose outputs depend strongly on the image (a fresh head is nearly constant)."""
    torch.manual_seed(0)
    model = yolov7_tiny(num_classes=5)
    with torch.no_grad():
        for conv in model.detect.m:
            conv.weight.mul_(20)
    recalibrate_bn(model, iter([_batch(images_dir)]), 1, torch.device("cpu"))
    return model.eval()


def _distance(student: torch.nn.Module, teacher: torch.nn.Module, images: torch.Tensor) -> float:
    """Mean squared gap of the teacher-vs-student raw-head probabilities (BN in eval mode for both)."""
    s = raw_head_outputs(student, images)
    t = raw_head_outputs(teacher, images)
    return float(sum(((a.sigmoid() - b.sigmoid()) ** 2).mean() for a, b in zip(s, t)))


def _batch(images_dir) -> torch.Tensor:
    from edgeprune.data import ImageFolder, collate

    ds = ImageFolder(images_dir, IMG)
    return collate([ds[i] for i in range(len(ds))])[0]


def test_raw_head_outputs_keep_bn_state_and_mode(teacher, images_dir):
    x = _batch(images_dir)
    before = copy.deepcopy(teacher.state_dict())
    out = raw_head_outputs(teacher, x)
    assert [tuple(o.shape) for o in out] == [(8, 3, IMG // s, IMG // s, 10) for s in (8, 16, 32)]
    assert not teacher.training and not teacher.detect.training
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # running stats untouched
    with pytest.raises(InvalidModelError):
        raw_head_outputs(torch.nn.Conv2d(3, 3, 1), x)


def test_objective_is_zero_for_identical_student(teacher, images_dir):
    x = _batch(images_dir)
    student = copy.deepcopy(teacher)
    student.eval()
    student.detect.train()  # same BN statistics as the teacher -> identical raw outputs
    loss, parts = DistillObjective(teacher)(student, x)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)
    assert set(parts) == {"box", "obj", "cls"}


def _perturbed(teacher: torch.nn.Module) -> torch.nn.Module:
    student = copy.deepcopy(teacher)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in student.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.add_(torch.randn(m.weight.shape, generator=g) * m.weight.std() * 0.5)
    return student.eval()


@pytest.mark.slow
def test_distillation_moves_student_toward_teacher(teacher, images_dir):
    x = _batch(images_dir)
    student = _perturbed(teacher)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    before = _distance(student, teacher, x)
    ft = DistillFinetune(teacher, images_dir, IMG, batch_size=4, lr=3e-3, progress=False, seed=0)
    out = ft(student, 40)
    after = _distance(out, teacher, x)
    assert out is student and not out.training
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items())  # unmodified
    assert ft.last_trainer.step == 40
    assert after < 0.8 * before, (before, after)


@pytest.mark.slow
def test_distillation_works_on_pruned_student(teacher, images_dir):
    import edgeprune

    x = _batch(images_dir)
    student = _perturbed(teacher)
    student = edgeprune.prune(student, torch.zeros(1, 3, IMG, IMG), sparsity=0.3)
    n_teacher = sum(p.numel() for p in teacher.parameters())
    assert sum(p.numel() for p in student.parameters()) < 0.9 * n_teacher
    before = _distance(student, teacher, x)
    DistillFinetune(teacher, images_dir, IMG, batch_size=4, lr=3e-3, progress=False)(student, 40)
    after = _distance(student, teacher, x)
    assert after < 0.8 * before, (before, after)
