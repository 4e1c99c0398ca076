"""Jobs as Ray tasks on a cluster (optional extra ``ray``): the ``Executor`` protocol beyond one machine.

Ray owns scheduling, placement on GPUs and retries; this module only submits one task per job and
yields results as they arrive, so the caller caches each result at once (a killed worker's task is
retried by Ray, a finished one is never submitted again). The job function travels once through
Ray's object store and each worker process deserializes it once per pass, not once per task.

Connecting never starts a cluster by surprise: ``address="auto"`` joins the cluster named by
``RAY_ADDRESS`` or the one ``ray start`` last started on this machine, and fails if there is none;
only ``address="local"`` starts a private Ray instance in this process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable, TypeVar

from edgeprune.errors import ClusterError, EdgepruneError, InvalidConfigError, MissingDependencyError

T = TypeVar("T")
R = TypeVar("R")

DEVICE_ENV = "EDGEPRUNE_TASK_DEVICE"  # set to "cuda" inside tasks that Ray gave a GPU
_FN_CACHE: dict[str, Any] = {}  # object-store id of the job function -> the function, per worker


def import_ray() -> Any:
    """The ``ray`` module, or ``MissingDependencyError`` naming the extra."""
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("ray", "ray", f"{exc}") from None
    return ray


def _run_task(box: list, task: Any, use_gpu: bool) -> Any:
    """Runs on a Ray worker: ``fn(task)``, with ``fn`` fetched once per worker and pass."""
    import ray

    ref = box[0]  # wrapped in a list so Ray hands over the reference, not a fresh copy per task
    fn = _FN_CACHE.get(ref.hex())
    if fn is None:
        fn = ray.get(ref)
        _FN_CACHE.clear()  # a new pass replaces the previous model; never hold two
        _FN_CACHE[ref.hex()] = fn
    if use_gpu:
        os.environ[DEVICE_ENV] = "cuda"
    else:
        os.environ.pop(DEVICE_ENV, None)
    return fn(task)


def validate_address(address: Any) -> str:
    """``auto``, ``local``, ``host:port`` or ``ray://host:port``; anything else is a config error."""
    if not isinstance(address, str) or not address.strip():
        raise InvalidConfigError(f"Ray address must be 'auto', 'local', 'host:port' or 'ray://host:port', "
                                 f"got {address!r}")
    address = address.strip()
    if address in ("auto", "local"):
        return address
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or "/" in hostport:
        raise InvalidConfigError(f"Ray address {address!r} must look like 'host:port' or 'ray://host:port' "
                                 "(or 'auto' for the cluster `ray start` started on this machine)")
    return address


def resolve_address(address: str = "auto") -> tuple[str | None, str]:
    """The address ``address`` would join and where it comes from, without connecting or starting Ray."""
    address = validate_address(address)
    if address == "local":
        return None, "a private Ray instance started in this process"
    if address != "auto":
        return address, "given"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    # where `ray start --head` records the cluster it started (Ray's own lookup for "auto")
    current = Path(os.environ.get("RAY_TMPDIR") or "/tmp") / "ray" / "ray_current_cluster"
    if current.is_file():
        text = current.read_text(encoding="utf-8").strip()
        if text:
            return text, f"the cluster `ray start` started on this machine ({current})"
    return None, "none: no RAY_ADDRESS and no cluster started here by `ray start --head`"


def _check_reachable(address: str, timeout: float) -> None:
    """``ClusterError`` unless a TCP connection to the address's host:port opens within ``timeout``."""
    import socket

    host, _, port = address[len("ray://"):].rpartition(":") if address.startswith("ray://") \
        else address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise ClusterError(
            f"no Ray cluster answers at {address}: {exc}. Start one with `ray start --head` (and "
            "`ray start --address=HEAD:PORT` on each worker), or fix the address"
        ) from None


_PROBE = """
import json, logging, sys, ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False)
nodes = [n for n in ray.nodes() if n["Alive"]]
res = ray.cluster_resources()
print(json.dumps({"nodes": len(nodes), "cpus": res.get("CPU", 0), "gpus": res.get("GPU", 0),
                  "ray": ray.__version__}))
"""


def probe_cluster(address: str, timeout: float = 30.0) -> dict:
    """Nodes, CPUs and GPUs of the running cluster at ``address`` (checked in a child process, bounded)."""
    import json
    import subprocess
    import sys

    _check_reachable(address, min(timeout, 10.0))
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True,
                             timeout=timeout, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    except subprocess.TimeoutExpired:
        raise ClusterError(f"Ray cluster at {address} did not answer within {timeout:g} s") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise ClusterError(f"cannot join the Ray cluster at {address}: {last}")
    return json.loads(lines[-1])


class RayExecutor:
    """Runs each job as a Ray task: ``num_cpus`` CPUs, ``num_gpus`` GPUs, retried ``max_retries`` times.

    ``num_gpus="auto"`` asks one GPU per task when the cluster has GPUs, none otherwise. Every node
    needs the same Python environment (edgeprune, and the module of a user-defined evaluator), and
    the files the evaluator reads (validation images) at the same path, or a ``runtime_env``.
    """

    ships_objects = True  # the job goes through Ray's object store, not a file on this machine

    def __init__(self, address: str = "auto", num_cpus: float = 1, num_gpus: float | str = "auto",
                 max_retries: int = 3, runtime_env: dict | None = None) -> None:
        self.address = validate_address(address)
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or num_cpus <= 0:
            raise InvalidConfigError(f"num_cpus must be a positive number, got {num_cpus!r}")
        if num_gpus != "auto" and (isinstance(num_gpus, bool) or not isinstance(num_gpus, (int, float))
                                   or num_gpus < 0):
            raise InvalidConfigError(f"num_gpus must be 'auto' or a number >= 0, got {num_gpus!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise InvalidConfigError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.max_retries = max_retries
        self.runtime_env = runtime_env

    @property
    def workers(self) -> int:
        """Tasks the cluster can run at once (CPUs / num_cpus); 1 before connecting."""
        try:
            import ray
        except ImportError:
            return 1
        if not ray.is_initialized():
            return 1
        return max(1, int(ray.cluster_resources().get("CPU", 1) // self.num_cpus))

    def connect(self, timeout: float = 15.0) -> Any:
        """Join the cluster (once per process); returns the ``ray`` module.

        Checks first that the cluster's port answers within ``timeout`` seconds: ``ray.init`` itself
        retries an unreachable address forever.
        """
        ray = import_ray()
        if ray.is_initialized():
            return ray
        address, source = resolve_address(self.address)
        if address is None and self.address != "local":
            raise ClusterError(f"no Ray cluster to join ({source}). Start one with `ray start --head` (and "
                               "`ray start --address=HEAD:PORT` on each worker), or give its address")
        if address is not None:
            _check_reachable(address, timeout)
        ray.init(address=address, runtime_env=self.runtime_env, logging_level=logging.WARNING,
                 log_to_driver=True)
        return ray

    def gpus_per_task(self, ray: Any) -> float:
        """``num_gpus``, or for ``"auto"`` one GPU per task when the cluster has any."""
        if self.num_gpus != "auto":
            return float(self.num_gpus)
        return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for each task as soon as its Ray task finishes (completion order)."""
        tasks = list(tasks)
        if not tasks:
            return
        ray = self.connect()
        gpus = self.gpus_per_task(ray)
        remote = ray.remote(_run_task).options(num_cpus=self.num_cpus, num_gpus=gpus,
                                               max_retries=self.max_retries, retry_exceptions=False)
        box = [ray.put(fn)]
        pending = [remote.remote(box, task, gpus > 0) for task in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield self._get(ray, done[0])
        finally:
            # On an error or an abandoned generator, stop the queued and running tasks.
            for ref in pending:
                ray.cancel(ref, force=True)

    def _get(self, ray: Any, ref: Any) -> Any:
        try:
            return ray.get(ref)
        except EdgepruneError:  # the job's own error (Ray re-raises it as that type too)
            raise
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None
        except ray.exceptions.RayError as exc:  # workers or nodes lost beyond max_retries
            raise ClusterError(f"a Ray task failed after {self.max_retries} retries: {exc}") from None

    def shutdown(self) -> None:
        """Leave the cluster (stops the Ray instance if ``address="local"`` started it)."""
        ray = import_ray()
        if ray.is_initialized():
            ray.shutdown()

    def __repr__(self) -> str:
        return (f"RayExecutor(address={self.address!r}, num_cpus={self.num_cpus}, "
                f"num_gpus={self.num_gpus!r}, max_retries={self.max_retries})")
