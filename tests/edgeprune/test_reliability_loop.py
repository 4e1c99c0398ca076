"""The iterative loop verifies each prune it makes, and one run folder serves one process at a time."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeprune.errors import PruneVerificationError, RunLockedError
from edgeprune.iterative import SelectionConfig, SerialExecutor, iterative_prune
from edgeprune.runlock import lock_path, run_lock

X = torch.rand(1, 3, 8, 8)


class DividesByWidth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = F.relu(self.b(F.relu(self.a(x))))
        return self.out(y / y.shape[1])  # reads the channel count: pruning 'b' changes the scale


class ConstantEvaluator:
    primary = "score"

    def __call__(self, model):
        return {"score": 1.0}

    def settings(self):
        return {"kind": "constant"}


def _no_finetune(model, steps):
    return model


def _run(model, run_dir, **kw):
    return iterative_prune(model, X, ConstantEvaluator(), _no_finetune, run_dir=run_dir, iterations=1,
                           finetune_steps=0, executor=SerialExecutor(), progress=False,
                           selection=SelectionConfig(k=1, n_params=2, n_flops=1), rates=(0.5,), **kw)


def test_loop_refuses_a_prune_the_trace_could_not_see(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(PruneVerificationError, match="channel count"):
        _run(DividesByWidth(), tmp_path / "run", round_to=1)  # small groups: no rounding, so it prunes


def test_second_process_on_a_run_folder_is_refused(tmp_path):
    run = tmp_path / "run"
    with run_lock(run):
        with pytest.raises(RunLockedError, match="in use by another process"):
            _run(DividesByWidth(), run)
        code = ("import sys; from edgeprune.runlock import run_lock\n"
                "try:\n  with run_lock(sys.argv[1]): pass\nexcept Exception as e: print(type(e).__name__)")
        out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True,
                             timeout=120)
        assert out.stdout.strip() == "RunLockedError"
    with run_lock(run):  # released when the holder is done
        pass


def test_lock_file_symlink_is_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    run = tmp_path / "run"
    lock_path(run).symlink_to(victim)
    with pytest.raises(RunLockedError, match="symlink"):
        with run_lock(run):
            pass
    assert victim.read_text() == "keep me"


def test_concurrent_sweep_on_one_out_dir_is_refused(tmp_path):
    from edgeprune.deploy.sweep import sweep

    with run_lock(tmp_path / "out"):
        with pytest.raises(RunLockedError):
            sweep(tmp_path / "run", ["onnxruntime"], tmp_path / "out")


def test_swapped_sensitivity_payload_is_refused(tmp_path):
    import hashlib
    import pickle

    from edgeprune.errors import InvalidConfigError
    from edgeprune.iterative.sensitivity import _read_payload

    path = tmp_path / "payload.pkl"
    path.write_bytes(pickle.dumps({"ok": 1}))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _read_payload(str(path), digest) == {"ok": 1}
    path.write_bytes(pickle.dumps({"swapped": 1}))
    with pytest.raises(InvalidConfigError, match="digest"):
        _read_payload(str(path), digest)
