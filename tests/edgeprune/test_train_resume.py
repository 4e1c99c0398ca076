"""Checkpoints and resume: a resumed run continues at the saved step and matches an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch

from edgeprune.errors import InvalidConfigError
from edgeprune.models import yolov7_tiny
from edgeprune.training import LabeledObjective, TrainConfig, Trainer

# one torch thread: the same arithmetic everywhere, restored after each test (conftest.py)
pytestmark = pytest.mark.usefixtures("one_torch_thread")
IMG = 64
TOTAL, CUT = 6, 3


@pytest.fixture(scope="module")
def dataset(synthetic_data):
    from edgeprune.data import YoloDataset

    return YoloDataset(synthetic_data(8, seed=7, img_size=(IMG, IMG)), IMG, augment=False)


def _trainer(dataset, ckpt_dir, resume=False, **kw) -> Trainer:
    from edgeprune.data import collate

    torch.manual_seed(0)  # identical initial weights in every run
    model = yolov7_tiny(num_classes=5)
    cfg = TrainConfig(batch_size=3, lr=1e-3, warmup_steps=2, total_steps=TOTAL, ema=True, ema_tau=3.0,
                      ckpt_dir=str(ckpt_dir), resume=resume, progress=False, seed=0, **kw)
    return Trainer(model, LabeledObjective(model, IMG), dataset, cfg, collate_fn=collate)


@pytest.mark.slow
def test_resume_matches_uninterrupted_run(dataset, tmp_path):
    first = _trainer(dataset, tmp_path / "a", ckpt_every=2)
    first.train(CUT)
    ckpt = tmp_path / "a" / "last.pt"
    assert ckpt.exists() and not list((tmp_path / "a").glob("*.tmp"))
    saved = torch.load(ckpt, weights_only=True)  # plain tensors + JSON metadata: no pickle needed
    assert saved["step"] == CUT and json.loads(saved["config"])["total_steps"] == TOTAL
    assert set(saved) >= {"model", "optimizer", "scheduler", "ema", "rng", "config"}

    resumed = _trainer(dataset, tmp_path / "a", resume=True)
    assert resumed.step == CUT  # starts where the checkpoint left off
    # the optimizer state (AdamW moments and step counts) came back too
    st = resumed.optimizer.state_dict()["state"]
    assert st and all(int(v["step"]) == CUT for v in st.values())
    assert resumed.ema.updates == CUT
    resumed.train(TOTAL)
    assert resumed.start_step == CUT and resumed.step == TOTAL and len(resumed.history) == TOTAL - CUT

    straight = _trainer(dataset, tmp_path / "b")
    straight.train(TOTAL)
    # same batches, same updates: the resumed run ends where the uninterrupted one does
    assert [h["loss"] for h in straight.history[CUT:]] == pytest.approx(
        [h["loss"] for h in resumed.history], rel=1e-4)
    a, b = resumed.model.state_dict(), straight.model.state_dict()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)


def test_resume_without_checkpoint_starts_fresh_and_bad_config(dataset, tmp_path):
    t = _trainer(dataset, tmp_path / "empty", resume=True)
    assert t.step == 0
    with pytest.raises(InvalidConfigError):
        TrainConfig(resume=True).validate()  # resume needs a ckpt_dir
    with pytest.raises(InvalidConfigError):
        t.train(-1)
    frozen = yolov7_tiny(num_classes=5).requires_grad_(False)
    with pytest.raises(InvalidConfigError, match="no trainable parameters"):
        Trainer(frozen, LabeledObjective(frozen, IMG), dataset, TrainConfig(progress=False))


def test_resume_refuses_checkpoint_of_another_architecture(dataset, tmp_path):
    from edgeprune.data import collate

    t = _trainer(dataset, tmp_path / "c")
    t.save_checkpoint()
    other = yolov7_tiny(num_classes=3)  # different head -> the saved weights do not fit
    cfg = TrainConfig(ckpt_dir=str(tmp_path / "c"), resume=True, progress=False)
    with pytest.raises(InvalidConfigError, match="does not fit"):
        Trainer(other, LabeledObjective(other, IMG), dataset, cfg, collate_fn=collate)
