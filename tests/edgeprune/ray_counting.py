"""An evaluator that logs every finished evaluation, so the Ray tests can count what ran where.

Importable as ``ray_counting`` (this folder is on the PYTHONPATH of the test's Ray nodes), so Ray
workers can unpickle ``CountingEvaluator``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import test_iterative_tinynet as tiny
import torch


class CountingEvaluator(tiny.TinyEvaluator):
    """TinyEvaluator that appends ``<pruned shape> <node>`` to ``log`` after each finished evaluation.

    ``kill_flag``: the first process to pass ``kill_after`` logged evaluations creates this file and
    SIGKILLs itself mid-evaluation (a worker lost as if to the OOM killer). ``stop_after``: raises once
    the log holds that many lines (an interrupted run). ``hold``: seconds each evaluation takes.
    """

    def __init__(self, teacher, log: str, hold: float = 0.0, kill_flag: str | None = None,
                 kill_after: int = 2, stop_after: int | None = None) -> None:
        super().__init__(teacher)
        self.log, self.hold, self.kill_flag = log, hold, kill_flag
        self.kill_after, self.stop_after = kill_after, stop_after

    def _lines(self) -> list[str]:
        return Path(self.log).read_text().splitlines() if os.path.exists(self.log) else []

    def __call__(self, model):
        if self.stop_after is not None and len(self._lines()) >= self.stop_after:
            raise RuntimeError("interrupted on purpose")
        time.sleep(self.hold)
        if self.kill_flag and len(self._lines()) >= self.kill_after:
            try:
                fd = os.open(self.kill_flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.write(fd, str(os.getpid()).encode())
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        out = super().__call__(model)
        shape = "-".join(str(m.out_channels) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()[:8] if ray.is_initialized() else "driver"
        except ImportError:
            node = "driver"
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(f"{shape} {node} {os.getpid()}\n")
        return out

    def settings(self) -> dict:
        return super().settings()  # the log and kill switches do not change a result


def logged(path: str | Path) -> list[list[str]]:
    """The evaluation log: one ``[shape, node, pid]`` per finished evaluation."""
    p = Path(path)
    return [line.split() for line in p.read_text().splitlines()] if p.exists() else []


class DeviceEvaluator(tiny.TinyEvaluator):
    """TinyEvaluator that runs on the model's device and logs that device's type per evaluation."""

    def __init__(self, teacher, log: str) -> None:
        super().__init__(teacher)
        self.log = log

    def __call__(self, model):
        device = next(model.parameters()).device
        with open(self.log, "a", encoding="utf-8") as f:
            f.write(f"{device.type}\n")
        with torch.no_grad():
            out = model.eval()(self.inputs.to(device)).cpu()
        rel = float(((out - self.target) ** 2).mean() / self.target.var())
        return {"fidelity": 1.0 / (1.0 + rel), "rel_mse": rel}
