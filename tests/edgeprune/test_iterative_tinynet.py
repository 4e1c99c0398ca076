"""A tiny concat CNN, a cheap evaluator and a cheap fine-tune for the iterative-pruning tests.

Importable as ``test_iterative_tinynet`` (with this folder on sys.path / PYTHONPATH) so spawned
sensitivity workers can unpickle the evaluator, and runnable as a script: ``python
test_iterative_tinynet.py RUN_DIR ITERATIONS`` runs ``iterative_prune`` there (the resume test kills
it with SIGKILL through the ``TINY_KILL_AT_EVAL`` / ``TINY_KILL_AT_FINETUNE`` variables).
"""

from __future__ import annotations

import os
import signal
import sys
import time

import torch
from torch import nn

IMG = 32


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int = 3, s: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.SiLU())


class TinyNet(nn.Module):
    """Six prunable convs, two concatenations (one reused twice), an upsample and an output conv."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBN(3, 16, 3, 2)
        self.a = ConvBN(16, 16, 3)
        self.b = ConvBN(16, 16, 1)
        self.c = ConvBN(32, 32, 3, 2)
        self.d = ConvBN(32, 24, 3)
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.e = ConvBN(24 + 32, 32, 1)
        self.head = nn.Conv2d(32, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        a = self.a(s)
        ab = torch.cat([a, self.b(a)], 1)
        d = self.d(self.c(ab))
        return self.head(self.e(torch.cat([self.up(d), ab], 1)))


def tiny_model(seed: int = 0) -> TinyNet:
    """A TinyNet with seeded random weights and non-trivial BN statistics, in eval mode."""
    torch.manual_seed(seed)
    model = TinyNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.2, 1.5)  # unequal BN scales: pruning criteria see a difference
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def probe(n: int = 8, seed: int = 123) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, IMG, IMG, generator=g)


class TinyEvaluator:
    """Fidelity to the unpruned model on fixed random images: ``fidelity = 1 / (1 + relative MSE)``."""

    primary = "fidelity"

    def __init__(self, teacher: nn.Module, n: int = 8) -> None:
        self.inputs = probe(n)
        with torch.no_grad():
            self.target = teacher.eval()(self.inputs)
        self.calls = 0

    def __call__(self, model: nn.Module) -> dict[str, float]:
        self.calls += 1
        pid_dir = os.environ.get("TINY_PID_DIR")
        if pid_dir:  # the orphan test learns the worker pids this way, and keeps them busy
            open(os.path.join(pid_dir, str(os.getpid())), "w").close()
            time.sleep(float(os.environ.get("TINY_EVAL_SLEEP", "0.5")))
        limit = os.environ.get("TINY_KILL_AT_EVAL")
        if limit and self.calls >= int(limit):
            os.kill(os.getpid(), signal.SIGKILL)
        with torch.no_grad():
            out = model.eval()(self.inputs)
        rel = float(((out - self.target) ** 2).mean() / self.target.var())
        return {"fidelity": 1.0 / (1.0 + rel), "rel_mse": rel}

    def settings(self) -> dict:
        return {"kind": "tiny-fidelity", "n": len(self.inputs)}


class TinyFinetune:
    """Distil towards the teacher on random inputs from torch's global RNG (seeded by the loop)."""

    def __init__(self, teacher: nn.Module, lr: float = 0.05) -> None:
        self.teacher = teacher.eval()
        self.lr = lr
        self.calls = 0
        self.outputs: list[torch.Tensor] = []  # the tuned model's output on probe(), per call

    def __call__(self, model: nn.Module, steps: int) -> nn.Module:
        self.calls += 1
        limit = os.environ.get("TINY_KILL_AT_FINETUNE")
        opt = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=0.9)
        model.train()
        for step in range(steps):
            if limit and self.calls >= int(limit) and step == steps // 2:
                os.kill(os.getpid(), signal.SIGKILL)  # die mid-fine-tune
            x = torch.rand(4, 3, IMG, IMG)
            with torch.no_grad():
                y = self.teacher(x)
            loss = ((model(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            self.outputs.append(model(probe()))
        return model

    def settings(self) -> dict:
        return {"kind": "tiny-distill", "lr": self.lr}


def run_tiny(run_dir: str, iterations: int, executor=None, **kwargs):
    """``iterative_prune`` on TinyNet with the cheap evaluator and fine-tune."""
    from edgeprune.iterative import SelectionConfig, SerialExecutor, iterative_prune

    teacher = tiny_model()
    kwargs.setdefault("selection", SelectionConfig(k=4, n_params=2, n_flops=1))
    kwargs.setdefault("finetune_steps", 6)
    return iterative_prune(
        tiny_model(), torch.zeros(1, 3, IMG, IMG), TinyEvaluator(teacher), TinyFinetune(teacher),
        run_dir=run_dir, iterations=iterations, executor=executor or SerialExecutor(),
        progress=False, **kwargs,
    )


def test_tiny_model_runs_and_is_seeded():
    a, b = tiny_model(), tiny_model()
    out = a(probe(2))
    assert out.shape == (2, 8, IMG // 2, IMG // 2)
    assert torch.equal(out, b(probe(2)))


if __name__ == "__main__":
    torch.set_num_threads(1)  # the same arithmetic in every process the resume test compares
    if sys.argv[2] == "pool":  # a sensitivity pass on two worker processes
        from edgeprune.iterative import LocalProcessExecutor, sensitivity

        model = tiny_model()
        sensitivity(model, torch.zeros(1, 3, IMG, IMG), TinyEvaluator(model),
                    executor=LocalProcessExecutor(2), cache_dir=sys.argv[1], progress=False)
    else:
        result = run_tiny(sys.argv[1], int(sys.argv[2]))
        print(result.final_iteration, result.stop_reason)
