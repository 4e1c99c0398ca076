"""A real Ray cluster on 127.0.0.1 (a head and worker nodes, started with ``ray start``), stopped by
pid so that other Ray clusters on the machine survive. Standard library only: the benchmarks load it
by path too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """``ray start --head`` plus ``workers`` worker nodes on this machine, one CPU each; ``stop()`` always.

    A failed start stops what did start (``start`` raises after cleaning up).
    """

    def __init__(self, workers: int = 1, cpus: int = 1, gpus: int = 0, timeout: float = 180.0) -> None:
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = _free_port()
        self.client_address = f"ray://127.0.0.1:{self.client_port}"
        self.temp_dir = tempfile.mkdtemp(prefix="epray-", dir="/tmp")  # short: Ray's sockets live here
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                    "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self.workers, self.cpus, self.gpus, self.timeout = workers, cpus, gpus, timeout

    def _ray(self, *args: str) -> None:
        subprocess.run([RAY, *args], env=self.env, check=True, timeout=self.timeout,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> LocalRayCluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        common = [f"--num-cpus={self.cpus}", f"--num-gpus={self.gpus}", "--node-ip-address=127.0.0.1",
                  "--disable-usage-stats"]
        self._ray("start", "--head", f"--port={self.port}", "--include-dashboard=false",
                  f"--ray-client-server-port={self.client_port}", f"--temp-dir={self.temp_dir}", *common)
        for _ in range(self.workers):
            self._ray("start", f"--address={self.address}", *common)

    def stop(self) -> None:
        """Kill this cluster's processes only (found by its own temp dir), not other Ray clusters here."""
        try:
            import ray

            ray.shutdown()
        except ImportError:
            pass
        stop_processes_under(self.temp_dir, self.port)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _cmdline_and_parent(pid: int) -> tuple[str, int]:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return "", 0
    return cmd, ppid


def stop_processes_under(temp_dir: str, port: int, timeout: float = 30.0) -> None:
    """SIGKILL, by pid, every process whose command line names ``temp_dir`` or the GCS ``port``, and their
    descendants (Ray workers and agents rename themselves); wait until they are gone. ``ray stop
    --force`` would stop every Ray cluster on the machine, other test runs' included."""
    gcs = re.compile(rf"address=\S*:{port}(\s|$)")
    procs = {int(p.name): _cmdline_and_parent(int(p.name)) for p in Path("/proc").iterdir()
             if p.name.isdigit()}
    mine = {pid for pid, (cmd, _) in procs.items()
            if (temp_dir in cmd or gcs.search(cmd)) and pid != os.getpid()}
    grew = True
    while grew:
        kids = {pid for pid, (_, ppid) in procs.items() if ppid in mine and pid != os.getpid()} - mine
        grew = bool(kids)
        mine |= kids
    for pid in mine:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() and
                                              "Z" not in _state(pid) for pid in mine):
        time.sleep(0.2)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"
