"""Where sensitivity jobs run: in this process, in a pool of local worker processes, or on Ray.

The algorithm only calls ``executor.map(fn, tasks)``; a cluster executor implements that one method
(``ray_executor.RayExecutor``), without touching the sensitivity code.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Protocol, TypeVar, runtime_checkable

from edgeprune.errors import InvalidConfigError

T = TypeVar("T")
R = TypeVar("R")


@runtime_checkable
class Executor(Protocol):
    """Runs ``fn`` on every task; yields the results as they finish, in ANY order.

    ``fn`` and the tasks must be picklable for executors that leave this process; each result
    identifies its own task, so the caller never relies on order.
    """

    workers: int

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]: ...


class SerialExecutor:
    """Runs every task in this process, in order (tests, ``workers=1``, debugging)."""

    workers = 1

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for each task, in order."""
        for task in tasks:
            yield fn(task)

    def __repr__(self) -> str:
        return "SerialExecutor()"


def _exit_with_parent(parent_pid: int) -> None:
    # A parent killed with SIGKILL cannot stop its pool; without this its workers keep computing.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            os._exit(1)


def _init_worker(parent_pid: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    # One intra-op thread per worker: N workers x N threads would oversubscribe the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # an executor can run torch-free jobs too
        pass


class LocalProcessExecutor:
    """Runs tasks in ``workers`` local processes (``concurrent.futures``), one torch thread each.

    ``start_method`` defaults to ``"spawn"``: forking a process that already ran torch can deadlock on
    its thread pools. With spawn, ``fn`` must be importable by module path (not a lambda or a local
    function) and everything it carries must be picklable.
    """

    def __init__(self, workers: int | None = None, start_method: str = "spawn") -> None:
        workers = (os.cpu_count() or 1) if workers is None else workers
        if not isinstance(workers, int) or workers < 1:
            raise InvalidConfigError(f"workers must be a positive integer, got {workers!r}")
        if start_method not in multiprocessing.get_all_start_methods():
            raise InvalidConfigError(
                f"start_method {start_method!r} is not available here; "
                f"choose one of {multiprocessing.get_all_start_methods()}"
            )
        self.workers = workers
        self.start_method = start_method

    def map(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        """Yield ``fn(task)`` for each task as soon as it finishes (completion order)."""
        tasks = list(tasks)
        if not tasks:
            return
        if self.start_method != "fork" and unguarded_main_call():
            # Each spawned worker would re-run the script, pruning again inside every worker.
            _notice_once(
                f"edgeprune: running {len(tasks)} jobs in this process: this script calls edgeprune outside "
                f"`if __name__ == \"__main__\":`; put the call under that guard to use {self.workers} "
                "worker processes"
            )
            yield from SerialExecutor().map(fn, tasks)
            return
        ctx = multiprocessing.get_context(self.start_method)
        with ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)), mp_context=ctx, initializer=_init_worker,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [pool.submit(fn, task) for task in tasks]
            try:
                for fut in as_completed(futures):
                    yield fut.result()
            finally:
                # On an error or an abandoned generator, do not wait for the queued tasks.
                for fut in futures:
                    fut.cancel()

    def __repr__(self) -> str:
        return f"LocalProcessExecutor(workers={self.workers}, start_method={self.start_method!r})"


_NOTICES: set[str] = set()


def _notice_once(msg: str) -> None:
    if msg not in _NOTICES:
        _NOTICES.add(msg)
        print(msg, file=sys.stderr, flush=True)


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (either operand order)."""
    if not (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)):
        return False
    test = node.test
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    consts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and consts == ["__main__"]


def unguarded_main_call() -> bool:
    """True when the running script calls us from top-level code not under ``if __name__ == "__main__":``.

    Spawned workers import the main script again; such a call would then run once more in every
    worker (and fail there). Interactive sessions, ``python -c`` and ``python -m pkg`` are not
    re-imported, and a script whose source cannot be read is assumed to be guarded.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    spec = getattr(main, "__spec__", None)
    if main is None or not path or (spec is not None and spec.name.endswith("__main__")):
        return False
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_globals is main.__dict__ and frame.f_code.co_name == "<module>"):
        frame = frame.f_back
    if frame is None:  # not called from the script's top level (e.g. from a thread or a callback)
        return False
    try:
        with open(path, encoding="utf-8") as f:
            return not line_is_guarded(f.read(), frame.f_lineno)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False


def line_is_guarded(source: str, line: int) -> bool:
    """Whether ``line`` of the module ``source`` lies inside an ``if __name__ == "__main__":`` body."""
    for node in ast.walk(ast.parse(source)):
        if _is_main_guard(node) and node.body[0].lineno <= line <= (node.body[-1].end_lineno or line):
            return True
    return False


def default_executor(workers: int | None = None) -> Any:
    """``SerialExecutor`` for one worker, else ``LocalProcessExecutor`` (default: all cores)."""
    workers = (os.cpu_count() or 1) if workers is None else workers
    if workers == 1:
        return SerialExecutor()
    return LocalProcessExecutor(workers)


EXECUTOR_KINDS = ("local", "serial", "ray")
EXECUTOR_KEYS = {"local": {"workers"}, "serial": set(),
                  "ray": {"address", "num_cpus", "num_gpus", "max_retries", "runtime_env"}}


def executor_from_config(spec: dict | None, workers: int | None = None) -> Any:
    """An executor from ``{kind: local|serial|ray, ...}`` (the prune config's ``executor`` section).

    ``local`` takes ``workers`` (default: the ``workers`` argument, else all cores); ``ray`` takes
    ``address`` (auto, local, host:port, ray://host:port), ``num_cpus``, ``num_gpus``, ``max_retries``.
    """
    spec = dict(spec or {})
    kind = spec.pop("kind", None) or "local"
    if kind not in EXECUTOR_KINDS:
        raise InvalidConfigError(f"executor kind {kind!r} is unknown; choose one of {list(EXECUTOR_KINDS)}")
    bad = sorted(k for k in spec if k not in EXECUTOR_KEYS[kind] and spec[k] is not None)
    if bad:
        raise InvalidConfigError(
            f"executor kind {kind!r} takes no {bad}; it takes {sorted(EXECUTOR_KEYS[kind])}")
    spec = {k: v for k, v in spec.items() if v is not None}
    if kind == "ray":
        from edgeprune.iterative.ray_executor import RayExecutor

        return RayExecutor(**spec)
    if kind == "serial":
        return SerialExecutor()
    return default_executor(spec.get("workers", workers))
