"""Recovery fine-tune of a pick: early stopping on the validation metric, resume after interruption."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from edgeprune.deploy.recovery import RecoveryConfig, load_recovered, recover, recovery_dir
from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_text
from edgeprune.iterative.candidates import iter_dir, save_weights
from edgeprune.pruning import PruningPlan
from edgeprune.training.finetune import make_config
from edgeprune.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _factory() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))


class _Finetune:
    """Regression toward a fixed linear target: the loss falls steadily, so fine-tuning helps."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(1)
        self.x = torch.randn(64, 4, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def make_trainer(self, model, steps, **overrides):
        cfg = make_config(steps, batch_size=8, lr=0.05, ema=False, progress=False, bn_recalibrate=2,
                          **overrides)

        def objective(m, batch):
            loss = ((m(batch[0]) - batch[1]) ** 2).mean()
            return loss, {}

        return Trainer(model, objective, TensorDataset(self.x, self.y), cfg)

    def settings(self) -> dict:
        return {"kind": "toy"}


class _Scripted:
    """Returns a scripted metric per call (to drive early stopping); records every call."""

    primary = "score"

    def __init__(self, values, fail_at: int | None = None) -> None:
        self.values, self.fail_at, self.calls = list(values), fail_at, 0

    def __call__(self, model):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt  # the process is killed mid-run
        return {"score": self.values[min(self.calls - 1, len(self.values) - 1)]}

    def settings(self) -> dict:
        return {"kind": "scripted"}  # the same evaluator across a resume


def _run(tmp_path):
    run = tmp_path / "run"
    d = iter_dir(run, 0)
    d.mkdir(parents=True)
    atomic_write_text(d / "plan.json", PruningPlan([]).to_json())
    save_weights(_factory(), d / "weights.pt")
    return run


def test_early_stop_keeps_the_best_evaluation(tmp_path):
    run = _run(tmp_path)
    # before 0.1; then 0.3 (best at step 5), 0.2, 0.25 -> two evaluations without improvement: stop
    ev = _Scripted([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    cfg = RecoveryConfig(steps=40, eval_every=5, patience=2)
    state = recover(run, 0, _factory, _Finetune(), ev, cfg, progress=False)
    assert state["finished"] and state["stop_reason"].startswith("early stop")
    assert [e["step"] for e in state["evals"]] == [0, 5, 10, 15]
    assert state["best_step"] == 5 and state["before"]["score"] == 0.1 and state["after"]["score"] == 0.3
    assert ev.calls == 4  # stopped: the later (better) scripted values were never reached
    # best.pt holds the step-5 weights, not the last ones
    ckpt = torch.load(recovery_dir(run, 0) / "ckpt" / "last.pt", weights_only=False)
    assert ckpt["step"] == 15
    best = load_recovered(run, 0, _factory).state_dict()
    original = torch.load(iter_dir(run, 0) / "weights.pt", weights_only=True)
    assert not torch.equal(best["0.weight"], original["0.weight"])
    assert not torch.equal(best["0.weight"], ckpt["model"]["0.weight"])
    # a finished recovery is returned as is
    again = recover(run, 0, _factory, _Finetune(), _Scripted([0.1, 0.3, 0.2, 0.25, 0.9, 0.9]), cfg,
                    progress=False)
    assert again == state


def test_budget_stop_when_it_keeps_improving(tmp_path):
    state = recover(_run(tmp_path), 0, _factory, _Finetune(), _Scripted([0.1, 0.2, 0.3, 0.4]),
                    RecoveryConfig(steps=12, eval_every=5, patience=2), progress=False)
    assert [e["step"] for e in state["evals"]] == [0, 5, 10, 12]
    assert state["stop_reason"].startswith("budget") and state["best_step"] == 12


def test_interrupted_recovery_resumes_to_the_same_result(tmp_path):
    values = [0.1, 0.2, 0.3, 0.35, 0.34, 0.33, 0.3]
    cfg = RecoveryConfig(steps=30, eval_every=5, patience=2)
    straight = recover(_run(tmp_path / "a"), 0, _factory, _Finetune(), _Scripted(values), cfg, progress=False)

    run = _run(tmp_path / "b")
    with pytest.raises(KeyboardInterrupt):  # killed at the third evaluation (step 10 trained, not scored)
        recover(run, 0, _factory, _Finetune(), _Scripted(values, fail_at=3), cfg, progress=False)
    ckpt = torch.load(recovery_dir(run, 0) / "ckpt" / "last.pt", weights_only=False)
    assert ckpt["step"] == 10
    # the rerun continues at step 10 (no step is trained twice) and scores it with the 3rd value
    resumed_ev = _Scripted(values[2:])
    resumed = recover(run, 0, _factory, _Finetune(), resumed_ev, cfg, progress=False)
    assert [e["step"] for e in resumed["evals"]] == [e["step"] for e in straight["evals"]]
    assert [e["metrics"] for e in resumed["evals"]] == [e["metrics"] for e in straight["evals"]]
    assert resumed["best_step"] == straight["best_step"] == 15
    a = load_recovered(tmp_path / "a" / "run", 0, _factory).state_dict()
    b = load_recovered(run, 0, _factory).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_other_inputs_are_refused_unless_fresh(tmp_path):
    run = _run(tmp_path)
    cfg = RecoveryConfig(steps=5, eval_every=5, patience=1)
    recover(run, 0, _factory, _Finetune(), _Scripted([0.1, 0.2]), cfg, progress=False)
    other = RecoveryConfig(steps=10, eval_every=5, patience=1)
    with pytest.raises(InvalidConfigError, match="fresh"):
        recover(run, 0, _factory, _Finetune(), _Scripted([0.1, 0.2]), other, progress=False)
    state = recover(run, 0, _factory, _Finetune(), _Scripted([0.1, 0.2, 0.3]), other, fresh=True,
                    progress=False)
    assert state["evals"][-1]["step"] == 10
    with pytest.raises(InvalidConfigError, match="positive"):
        RecoveryConfig(steps=0).validate()
    with pytest.raises(InvalidConfigError, match="make_trainer"):
        recover(run, 0, _factory, lambda m, s: m, _Scripted([0.1]), cfg, progress=False)


def test_cli_finetune_names_missing_data(tmp_path, capsys):
    from edgeprune.cli import main

    run = tmp_path / "prune"
    run.mkdir()
    assert main(["finetune", str(run), "--candidate", "1", "--bootstrap", "0"]) == 1
    err = capsys.readouterr().err
    assert "--config" in err and "--train" in err
