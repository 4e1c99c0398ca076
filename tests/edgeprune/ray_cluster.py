"""A real Ray cluster on 127.0.0.1 (a head and worker nodes, started with ``ray start``) for the tests,
and an evaluator that logs every finished evaluation, so tests can count what ran where.

Importable as ``ray_cluster`` (this folder on sys.path / PYTHONPATH of the Ray nodes), so Ray workers
can unpickle ``CountingEvaluator``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import test_iterative_tinynet as tiny
import torch

HERE = Path(__file__).resolve().parent
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """``ray start --head`` plus ``workers`` worker nodes on this machine, one CPU each; ``stop()`` always."""

    def __init__(self, workers: int = 1, cpus: int = 1, timeout: float = 180.0) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = _free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.temp_dir = tempfile.mkdtemp(prefix="epray-", dir="/tmp")  # short: Ray's sockets live here
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self.workers, self.cpus, self.timeout = workers, cpus, timeout

    def _ray(self, *args: str) -> None:
        subprocess.run([RAY, *args], env=self.env, check=True, timeout=self.timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> LocalRayCluster:
        common = [f"--num-cpus={self.cpus}", "--num-gpus=0", "--node-ip-address=127.0.0.1",
                  "--disable-usage-stats"]
        self._ray("start", "--head", f"--port={self.port}", "--include-dashboard=false",
                  f"--ray-client-server-port={self.client_port}", f"--temp-dir={self.temp_dir}", *common)
        for _ in range(self.workers):
            self._ray("start", f"--address={self.address}", *common)
        return self

    def stop(self) -> None:
        try:
            import ray

            ray.shutdown()
        except ImportError:
            pass
        subprocess.run([RAY, "stop", "--force"], env=self.env, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


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
