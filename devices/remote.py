"""Profile a job on a remote device over SSH, with the system ``ssh``/``scp`` binaries.

Using the system client means ``~/.ssh/config``, keys, agents, jump hosts and host-key checking work as
the user set them up; we only add ``BatchMode=yes`` (never prompt), a connect timeout and keep-alives.
One attempt: probe the device (hashes of what it already has), fetch results it has that we lack,
upload only missing or changed files (agent, candidates, manifest of what is still pending), run the
agent and stream its JSON progress lines; every result line is written to the local job folder at once,
so a cut connection loses nothing already measured. Transient failures (ssh exit 255: refused, reset,
timed out, closed) are retried with exponential backoff; the agent resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from edgeprune.devices.jobs import job_results, pending
from edgeprune.devices.profile_schema import DeviceProfile
from edgeprune.devices.protocol import MANIFEST, Manifest, is_current, read_job_manifest, result_path
from edgeprune.errors import DeviceError, DeviceUnreachableError, ProtocolError
from edgeprune.fileio import atomic_write_bytes, sha256_bytes, sha256_file, write_json

OnEvent = Callable[[dict], None]
_FATAL = re.compile(r"permission denied|host key verification failed|remote host identification has changed|"
                    r"bad configuration option|no such identity|too many authentication failures", re.I)
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/~+-]+$")

# Runs on the device with its python: creates the job folders, prints sha256 of what is there.
_PROBE = r"""
import hashlib, json, os, sys
root, job, agent = sys.argv[1:4]
def h(p):
    d = hashlib.sha256()
    with open(p, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            d.update(b)
    return d.hexdigest()
jd = os.path.join(root, job)
for sub in ("candidates", "results"):
    os.makedirs(os.path.join(jd, sub), exist_ok=True)
files = {}
for sub in ("", "candidates", "results"):
    d = os.path.join(jd, sub)
    for n in os.listdir(d):
        p = os.path.join(d, n)
        if os.path.isfile(p) and not n.startswith("."):
            files[sub + "/" + n if sub else n] = h(p)
a = os.path.join(root, agent)
print(json.dumps({"agent": h(a) if os.path.isfile(a) else None, "files": files}))
"""


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts and exponential backoff for transient SSH failures."""

    attempts: int = 4
    backoff_s: float = 2.0
    factor: float = 2.0
    max_backoff_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.max_backoff_s, self.backoff_s * self.factor ** (attempt - 1))


@dataclass(frozen=True)
class SshTarget:
    """Where and how to connect; ``options`` are extra ``Key=Value`` options for ssh and scp."""

    host: str  # "host", "user@host" or a ~/.ssh/config alias
    port: Optional[int] = None
    user: Optional[str] = None
    identity_file: Optional[str] = None
    config_file: Optional[str] = None
    options: Sequence[str] = ()
    connect_timeout: float = 10.0
    control_dir: Optional[str] = None  # set: share one connection for all ssh/scp calls (ControlMaster)

    def args(self) -> list[str]:
        """Options common to ssh and scp (``-o Port=`` works for both, unlike ``-p``/``-P``)."""
        out = ["-F", self.config_file] if self.config_file else []
        # command-line options win over ~/.ssh/config, so only what we must set goes here
        out += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, math.ceil(self.connect_timeout))}",
                "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4"]
        if self.port:
            out += ["-o", f"Port={self.port}"]
        if self.user:
            out += ["-o", f"User={self.user}"]
        if self.identity_file:
            out += ["-o", f"IdentityFile={os.path.expanduser(self.identity_file)}"]
        if self.control_dir:  # one handshake per job instead of one per step (slow links, busy devices)
            out += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                    "-o", "ControlPersist=60"]
        for opt in self.options:
            out += ["-o", opt[2:] if opt.startswith("-o") else opt]
        return out


class _Transient(Exception):
    """A failure worth retrying (connection refused/reset/closed, ssh exit 255)."""


_AGENT_LOCK = threading.Lock()
_AGENT_CACHE: dict[str, Path] = {}


def default_agent() -> Path:
    """The agent zipapp of this installation, built once per process into a temp folder."""
    from edgeprune.devices.pack import build_agent

    with _AGENT_LOCK:
        if "agent" not in _AGENT_CACHE or not _AGENT_CACHE["agent"].is_file():
            folder = Path(tempfile.mkdtemp(prefix="edgeprune-agent-"))
            _AGENT_CACHE["agent"] = build_agent(folder / "edgeprune-agent.pyz")
        return _AGENT_CACHE["agent"]


class RemoteDevice:
    """A device reached over SSH that runs jobs with the agent and its own Python."""

    def __init__(
        self, target: SshTarget, python: str = "python3", remote_dir: str = ".edgeprune",
        env: Mapping[str, str] | None = None, retry: RetryPolicy | None = None,
        agent: str | os.PathLike | None = None, name: str | None = None, multiplex: bool = True,
    ) -> None:
        remote_dir = remote_dir[2:] if remote_dir.startswith("~/") else remote_dir  # relative = home
        if not _SAFE_PATH.match(remote_dir):
            raise DeviceError(f"remote_dir {remote_dir!r}: use letters, digits and ./_-+ only")
        self.target, self.python, self.remote_dir = target, python, remote_dir.rstrip("/") or "."
        self.env = dict(env or {})
        self.retry = retry or RetryPolicy()
        self.agent = Path(agent) if agent else None
        self.name = name or target.host
        self.multiplex = multiplex

    @classmethod
    def from_profile(cls, profile: DeviceProfile, host: str | None = None, **kwargs: Any) -> RemoteDevice:
        """A RemoteDevice from a profile's ``ssh`` section; ``host`` overrides the profile's host."""
        ssh = profile.ssh
        host = host or (ssh.host if ssh else None)
        if not host:
            raise DeviceError(f"device profile '{profile.name}' has no ssh.host; pass host='user@host'")
        target_kw = {k: kwargs.pop(k) for k in ("port", "identity_file", "config_file", "connect_timeout")
                     if k in kwargs}
        extra_opts = list(kwargs.pop("options", ()))
        target = SshTarget(
            host=host, port=target_kw.get("port", ssh.port if ssh else None),
            user=ssh.user if ssh and "@" not in host else None,
            identity_file=target_kw.get("identity_file", ssh.identity_file if ssh else None),
            config_file=target_kw.get("config_file"), options=[*(ssh.options if ssh else ()), *extra_opts],
            connect_timeout=target_kw.get("connect_timeout", 10.0),
        )
        env = {**(ssh.env if ssh else {}), **kwargs.pop("env", {})}
        return cls(target, python=kwargs.pop("python", ssh.python if ssh else "python3"),
                   remote_dir=kwargs.pop("remote_dir", ssh.remote_dir if ssh else ".edgeprune"),
                   env=env, name=kwargs.pop("name", profile.name), **kwargs)

    # --- the job ---------------------------------------------------------------------------------
    def run_job(self, job_dir: str | os.PathLike, on_event: OnEvent | None = None) -> dict[str, dict]:
        """Profile the pending candidates of a local job folder on the device; results by candidate id."""
        job = Path(job_dir)
        manifest = read_job_manifest(job)
        last: Exception | None = None
        with self._connection():
            for attempt in range(1, self.retry.attempts + 1):
                try:
                    self._attempt(job, manifest, on_event, attempt)
                    return job_results(job, manifest)
                except _Transient as exc:
                    last = exc
                    delay = self.retry.delay(attempt) if attempt < self.retry.attempts else 0.0
                    self._emit(job, on_event, {"event": "retry", "attempt": attempt, "error": str(exc),
                                               "delay_s": delay})
                    time.sleep(delay)
        have = len(job_results(job, manifest))
        raise DeviceUnreachableError(
            f"device '{self.name}' ({self.target.host}) unreachable after {self.retry.attempts} attempts: "
            f"{last}; {have} of {len(manifest.candidates)} results are kept in {job / 'results'} "
            "(run again to resume)"
        )

    def _attempt(self, job: Path, manifest: Manifest, on_event: OnEvent | None, attempt: int) -> None:
        agent = self.agent or default_agent()
        agent_sha = sha256_file(agent)
        agent_name = f"agent-{agent_sha[:16]}.pyz"
        remote_job = f"jobs/{manifest.job_id}"
        if not _SAFE_PATH.match(manifest.job_id):
            raise DeviceError(f"job id {manifest.job_id!r}: use letters, digits and ._-+ only")
        probe = self._probe(remote_job, agent_name)
        self._fetch_results(job, manifest, remote_job, probe["files"])
        todo = pending(job, manifest)
        if not todo:
            self._emit(job, on_event, {"event": "done", "ok": 0, "skipped": len(manifest.candidates),
                                       "failed": 0, "note": "all results already on the host"})
            return
        if probe["agent"] != agent_sha:
            self._scp_up([agent], f"{self.remote_dir}/{agent_name}")
        uploads = [job / c.file for c in todo if probe["files"].get(c.file) != c.sha256]
        by_dir: dict[str, list[Path]] = {}
        for path in uploads:
            rel_dir = path.parent.relative_to(job).as_posix()
            by_dir.setdefault(rel_dir, []).append(path)
        for rel_dir, paths in by_dir.items():
            self._scp_up(paths, f"{self.remote_dir}/{remote_job}/{rel_dir}/")
        sub = json.dumps(manifest.subset([c.id for c in todo]).to_dict(), indent=2).encode()
        if probe["files"].get(MANIFEST) != sha256_bytes(sub):
            with tempfile.TemporaryDirectory(prefix="edgeprune-manifest-") as tmp:
                local = atomic_write_bytes(Path(tmp) / MANIFEST, sub)
                self._scp_up([local], f"{self.remote_dir}/{remote_job}/{MANIFEST}")
        self._run_agent(job, manifest, f"{self.remote_dir}/{agent_name}", f"{self.remote_dir}/{remote_job}",
                        on_event, attempt)
        if pending(job, manifest):  # results the device made while we were cut off were only skipped now
            self._fetch_results(job, manifest, remote_job, self._probe(remote_job, agent_name)["files"])

    @contextlib.contextmanager
    def _connection(self):
        """Share one SSH connection for the job (unless disabled), closed again at the end."""
        if not self.multiplex or os.name == "nt":
            yield
            return
        saved = self.target
        with tempfile.TemporaryDirectory(prefix="ep-ssh-") as control:
            self.target = dataclasses.replace(saved, control_dir=control)
            try:
                yield
            finally:
                subprocess.run(["ssh", *self.target.args(), "-O", "exit", self.target.host],
                               capture_output=True, stdin=subprocess.DEVNULL)
                self.target = saved

    def field_check(self, out: str | os.PathLike, on_event: OnEvent | None = None,
                    trtexec: bool = True) -> tuple[int, dict]:
        """Run the agent's field check on the device and fetch its report to ``out``: (exit code, report).

        The exit code is the agent's (0 ok, 1 a check failed, 3 incomplete); the report is the product,
        so a failing check is returned, not raised. No report at all raises ``DeviceError``."""
        agent = self.agent or default_agent()
        name = f"agent-{sha256_file(agent)[:16]}.pyz"
        folder = f"{self.remote_dir}/field-check"
        args = [f"{self.remote_dir}/{name}", "field-check", "--out", f"{folder}/report.json",
                "--work", f"{folder}/work", *([] if trtexec else ["--no-trtexec"])]
        try:
            with self._connection():
                self._check(self._ssh_run(f"mkdir -p {shlex.quote(folder)}"), "creating its folder")
                self._scp_up([agent], f"{self.remote_dir}/{name}")
                proc = subprocess.Popen(self._ssh_argv(self._python_cmd(args)), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
                err_lines: list[str] = []
                drain = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
                drain.start()
                for line in proc.stdout:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        event = {"event": "log", "line": line.rstrip("\n")}
                    if on_event is not None and isinstance(event, dict):
                        on_event({"device": self.name, **event})
                code = proc.wait()
                drain.join(timeout=5)
                stderr = "".join(err_lines)
                if code == 255:
                    self._check(subprocess.CompletedProcess([], code, "", stderr), "running the field check")
                with tempfile.TemporaryDirectory(prefix="edgeprune-field-") as tmp:
                    try:
                        self._scp_down([f"{folder}/report.json"], Path(tmp))
                    except DeviceError:
                        raise DeviceError(f"device '{self.name}': the field check wrote no report "
                                          f"(exit {code}): {stderr.strip()[-800:]}") from None
                    data = (Path(tmp) / "report.json").read_bytes()
        except _Transient as exc:
            raise DeviceUnreachableError(f"device '{self.name}' ({self.target.host}) unreachable: {exc}; "
                                         "run the field check again") from None
        atomic_write_bytes(out, data)
        return code, json.loads(data.decode("utf-8"))

    def environment(self, runtime: str | None = None, tegrastats_s: float = 0.0) -> dict:
        """The device's environment as its agent reports it (``agent env``): platform, CPU, Jetson state,
        and with ``runtime`` that runtime's version (``runtime_version``). Uploads the agent if missing."""
        agent = self.agent or default_agent()
        path = f"{self.remote_dir}/agent-{sha256_file(agent)[:16]}.pyz"
        env_cmd = self._python_cmd([path, "env", "--tegrastats-seconds", str(tegrastats_s)]
                                   + (["--runtime", runtime] if runtime else []))
        last: Exception | None = None
        with self._connection():
            for attempt in range(1, self.retry.attempts + 1):
                try:  # one round trip when the agent of this build is there already (exit 97: it is not)
                    out = self._ssh_run(f"test -f {shlex.quote(path)} || exit 97; {env_cmd}")
                    if out.returncode == 97:
                        mkdir = self._ssh_run(f"mkdir -p {shlex.quote(self.remote_dir)}")
                        self._check(mkdir, "creating its folder")
                        self._scp_up([agent], path)
                        out = self._ssh_run(env_cmd)
                    out = self._check(out, "reading its environment")
                    break
                except _Transient as exc:
                    last = exc
                    time.sleep(self.retry.delay(attempt) if attempt < self.retry.attempts else 0.0)
            else:
                raise DeviceUnreachableError(f"device '{self.name}' ({self.target.host}) unreachable after "
                                             f"{self.retry.attempts} attempts: {last}")
        try:
            report = json.loads(out.stdout)
        except ValueError:
            report = None
        if not isinstance(report, dict) or (runtime and not report.get("runtime_version")):
            raise DeviceError(f"device '{self.name}': unexpected 'agent env' output: {out.stdout[-300:]!r} "
                              f"{out.stderr[-300:]!r}")
        return report

    # --- steps -----------------------------------------------------------------------------------
    def _probe(self, remote_job: str, agent_name: str) -> dict:
        cmd = self._python_cmd(["-c", _PROBE, self.remote_dir, remote_job, agent_name])
        out = self._check(self._ssh_run(cmd), "probing the device")
        try:
            return json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise DeviceError(f"device '{self.name}': unexpected probe output: {out.stdout[-300:]!r} "
                              f"{out.stderr[-300:]!r}") from None

    def _fetch_results(self, job: Path, manifest: Manifest, remote_job: str, files: dict) -> None:
        """Copy device results we lack; keep only those current for this manifest."""
        key = manifest.options_sha256()
        wanted = []
        for cand in manifest.candidates:
            rel = f"results/{cand.id}.json"
            local = result_path(job, cand.id)
            if rel in files and (not local.is_file() or sha256_file(local) != files[rel]):
                wanted.append((cand, f"{self.remote_dir}/{remote_job}/{rel}"))
        if not wanted:
            return
        with tempfile.TemporaryDirectory(prefix=".incoming-", dir=job) as tmp:
            self._scp_down([r for _, r in wanted], Path(tmp))
            for cand, remote in wanted:
                got = Path(tmp) / Path(remote).name
                try:
                    result = json.loads(got.read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if is_current(result, cand, key):
                    os.replace(got, result_path(job, cand.id))

    def _run_agent(self, job: Path, manifest: Manifest, agent: str, remote_job: str,
                   on_event: OnEvent | None, attempt: int) -> None:
        key = {c.id: c for c in manifest.candidates}
        opts = manifest.options_sha256()
        cmd = self._python_cmd([agent, "run", remote_job])
        proc = subprocess.Popen(self._ssh_argv(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, text=True, bufsize=1)
        err_lines: list[str] = []
        drain = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
        drain.start()
        last_error = ""
        try:
            for line in proc.stdout:
                try:
                    event = json.loads(line)
                except ValueError:
                    event = {"event": "log", "line": line.rstrip("\n")}
                if not isinstance(event, dict):
                    continue
                result = event.get("result")
                cand = key.get(event.get("candidate", ""))
                if isinstance(result, dict) and cand is not None and result.get("sha256") == cand.sha256 \
                        and result.get("options_sha256") == opts:
                    write_json(result_path(job, cand.id), result)  # at once: a cut loses nothing measured
                if event.get("event") == "error":
                    last_error = str(event.get("message", ""))
                self._emit(job, on_event, {**event, "attempt": attempt})
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            drain.join(timeout=5)
        stderr = "".join(err_lines)
        if proc.returncode == 0:
            return
        if proc.returncode == 2:
            raise ProtocolError(f"device '{self.name}' refused the job: {last_error or stderr.strip()}")
        self._check(subprocess.CompletedProcess([], proc.returncode, "", stderr), "running the agent",
                    agent_error=last_error)

    # --- ssh / scp -------------------------------------------------------------------------------
    def _python_cmd(self, args: Sequence[str]) -> str:
        env = [f"{k}={v}" for k, v in self.env.items()]
        parts = (["env", *env] if env else []) + [self.python, *args]
        return " ".join(shlex.quote(p) for p in parts)

    def _ssh_argv(self, command: str) -> list[str]:
        return ["ssh", *self.target.args(), self.target.host, command]

    def _ssh_run(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._ssh_argv(command), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)

    def _scp_up(self, paths: Sequence[Path], remote: str) -> None:
        argv = ["scp", "-q", *self.target.args(), *map(str, paths), f"{self.target.host}:{remote}"]
        self._check(subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL),
                    f"uploading {len(paths)} file(s)")

    def _scp_down(self, remotes: Sequence[str], local_dir: Path) -> None:
        sources = [f"{self.target.host}:{r}" for r in remotes]
        argv = ["scp", "-q", *self.target.args(), *sources, str(local_dir)]
        self._check(subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL),
                    "fetching results")

    def _check(self, out: subprocess.CompletedProcess, what: str, agent_error: str = ""):
        """Return ``out`` if it succeeded; transient failures raise ``_Transient``, others ``DeviceError``."""
        if out.returncode == 0:
            return out
        stderr = (out.stderr or "").strip()
        tail = stderr.splitlines()[-1] if stderr else f"exit code {out.returncode}"
        if out.returncode == 255 and not _FATAL.search(stderr):
            raise _Transient(f"{what}: {tail}")
        if out.returncode == 255:
            raise DeviceError(f"device '{self.name}': ssh to {self.target.host} failed while {what}: {tail} "
                              "(check the key, user and known_hosts; ssh runs with BatchMode=yes)")
        if out.returncode == 127:
            raise DeviceError(f"device '{self.name}': command not found while {what} ({tail}); "
                              f"set ssh.python in the device profile (now {self.python!r})")
        raise DeviceError(f"device '{self.name}': {what} failed (exit {out.returncode}): "
                          f"{agent_error or stderr[-1500:]}")

    def _emit(self, job: Path, on_event: OnEvent | None, event: dict) -> None:
        event = {"device": self.name, **event}
        slim = {k: v for k, v in event.items() if k != "result"}
        with open(job / "events.jsonl", "a", encoding="utf-8") as f:  # the host's log of this job
            f.write(json.dumps({"time": time.time(), **slim}, default=str) + "\n")
        if on_event is not None:
            on_event(event)


__all__ = ["RemoteDevice", "RetryPolicy", "SshTarget", "default_agent"]
