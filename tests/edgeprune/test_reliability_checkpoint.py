"""No pickle is executed: training checkpoints hold tensors + JSON metadata and load with
``weights_only=True``; crafted, old, garbage, truncated and wrong-key files get one clear error."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from edgeprune.errors import InvalidConfigError
from edgeprune.training import TrainConfig, Trainer
from edgeprune.weights_io import load_weights


class _Payload:
    """Unpickling this runs ``os.system``: what a crafted checkpoint would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _trainer(ckpt_dir, resume: bool) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(ckpt_dir=str(ckpt_dir), resume=resume, progress=False, ema=True)
    return Trainer(nn.Conv2d(3, 4, 1), objective=None, dataset=[0], config=cfg)


def test_checkpoint_round_trip_without_pickle(tmp_path):
    t = _trainer(tmp_path, resume=False)
    random.random(), np.random.rand(), torch.rand(1)
    t.step = 7
    t.save_checkpoint()
    saved = torch.load(tmp_path / "last.pt", weights_only=True)  # loads as plain data
    assert saved["step"] == 7 and isinstance(saved["config"], str)
    expect = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    t2 = _trainer(tmp_path, resume=True)
    assert t2.step == 7
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expect  # RNG restored


def test_crafted_checkpoint_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {}, "step": 1, "evil": _Payload(str(marker))}, tmp_path / "last.pt")
    with pytest.raises(InvalidConfigError, match="cannot be read safely"):
        _trainer(tmp_path, resume=True)
    assert not marker.exists()


def test_old_format_checkpoint_is_refused_clearly(tmp_path):
    torch.save({"model": {}, "step": 1}, tmp_path / "last.pt")  # plain, but not our format
    with pytest.raises(InvalidConfigError, match="not an edgeprune training checkpoint"):
        _trainer(tmp_path, resume=True)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "wrong_keys", "wrong_shape", "pickle", "folder"])
def test_bad_weights_files_get_one_clear_error(tmp_path, kind):
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    path = tmp_path / "w.pt"
    if kind == "garbage":
        path.write_bytes(os.urandom(256))
    elif kind == "truncated":
        torch.save(model.state_dict(), path)
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "wrong_keys":
        torch.save({"x.weight": torch.zeros(1)}, path)
    elif kind == "wrong_shape":
        torch.save(nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8)).state_dict(), path)
    elif kind == "pickle":
        torch.save({"evil": _Payload(str(tmp_path / "pwned"))}, path)
    else:
        path.mkdir()
    with pytest.raises(InvalidConfigError, match=str(path)):
        load_weights(model, path)
    assert not (tmp_path / "pwned").exists()


def test_no_weights_only_false_in_the_package():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "edgeprune")
    found = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                if "weights_only=False" in text:
                    found.append(f)
    assert found == []
