"""Fixtures for device tests: tiny ONNX models, a torch-forbidding shim, a real OpenSSH server on
127.0.0.1 with throwaway keys, and the agent zipapp."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from onnx_models import save_onnx  # tests/runtimes is on pytest's pythonpath

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


def make_conv_onnx(path: Path, cout: int = 8, size: int = 32, seed: int = 0) -> Path:
    """A Conv+Relu ONNX model with input ``images [1,3,size,size]``."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array((rng.standard_normal((cout, 3, 3, 3)) * 0.1).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["images", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["y"], ["output"])]
    save_onnx(path, nodes, [w], [1, 3, size, size], [1, cout, size, size], opset=17)
    return path


@pytest.fixture
def tiny_models(tmp_path) -> list[Path]:
    d = tmp_path / "models"
    d.mkdir()
    return [make_conv_onnx(d / f"m{c}.onnx", cout=c, seed=c) for c in (8, 16)]


@pytest.fixture(scope="session")
def torch_shim(tmp_path_factory) -> Path:
    """A folder whose ``torch.py`` raises: put first on PYTHONPATH, torch cannot be imported."""
    d = tmp_path_factory.mktemp("torch_shim")
    (d / "torch.py").write_text("raise ImportError('torch is not available on this device')\n")
    return d


@pytest.fixture(scope="session")
def agent_pyz(tmp_path_factory) -> Path:
    from edgeprune.devices.pack import build_agent

    return build_agent(tmp_path_factory.mktemp("agent") / "edgeprune-agent.pyz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SshServer:
    """A throwaway sshd: key auth only, on 127.0.0.1, as the current user."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self.key = root / "client_key"
        self.known_hosts = root / "known_hosts"
        for key in (root / "host_key", self.key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        os.chmod(root / "authorized_keys", 0o600)
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {root / 'host_key'}",
            f"AuthorizedKeysFile {root / 'authorized_keys'}", f"PidFile {root / 'sshd.pid'}",
            "StrictModes no", "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes", "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp",
            "PrintMotd no", "LogLevel ERROR", "MaxStartups 50", "",
        ]))
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        log = open(self.root / "sshd.log", "ab")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.skip(f"sshd did not start: {(self.root / 'sshd.log').read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def session_pids(self) -> list[int]:
        """Per-connection sshd processes: children of the sshd this fixture started."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    pids.append(int(entry))
        return pids

    def target(self, **kw):
        from edgeprune.devices.remote import SshTarget

        return SshTarget(
            host="127.0.0.1", port=self.port, identity_file=str(self.key), config_file="/dev/null",
            options=[f"UserKnownHostsFile={self.known_hosts}", "StrictHostKeyChecking=accept-new",
                     "IdentitiesOnly=yes", "LogLevel=ERROR"], connect_timeout=5, **kw)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    if SSHD is None or shutil.which("ssh") is None or shutil.which("scp") is None:
        pytest.skip("OpenSSH server/client not installed (apt-get install openssh-server openssh-client)")
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def device_python() -> str:
    """The 'device' interpreter: this venv's python (it has numpy + onnxruntime); torch is shimmed away."""
    return sys.executable
