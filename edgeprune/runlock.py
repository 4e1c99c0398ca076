"""One process per run folder: an exclusive lock held for the whole run (torch-free).

The lock is a sibling file ``.<folder>.lock`` next to the run folder rather than inside it, so that
moving the folder aside (``fresh=True``) or checking it for emptiness is not disturbed. It is opened
with ``O_NOFOLLOW`` (a symlink planted there is refused, never followed and truncated) and locked
with ``fcntl.flock``, which the kernel releases when the process ends, even on SIGKILL: a stale lock
file cannot block the next run. The holder removes the file when it is done (while still holding
the lock; a process that locked a file since removed sees that its inode is gone and refuses). On
platforms without ``fcntl`` runs are not locked.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, TypeVar

from edgeprune.errors import RunLockedError

F = TypeVar("F", bound=Callable[..., Any])


def lock_path(run_dir: str | os.PathLike) -> Path:
    """Where the lock of ``run_dir`` lives."""
    p = Path(os.path.abspath(run_dir))
    return p.parent / f".{p.name}.lock"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` for the ``with`` block; ``RunLockedError`` if another process has it."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here
        yield lock_path(run_dir)
        return
    path = lock_path(run_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o644)
    except OSError as e:
        raise RunLockedError(f"cannot create the lock file {path} of run folder {run_dir}: {e.strerror or e} "
                             "(a symlink there is refused; is the folder writable?)") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RunLockedError(
                f"run folder {run_dir} is in use by another process (pid {holder}, lock {path}); wait for it "
                "to finish or use another run folder") from None
        try:
            same = os.lstat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder we waited on removed this file: another process may lock a new one
            raise RunLockedError(f"run folder {run_dir} was just in use by another process; try again")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield path
        finally:
            try:
                os.unlink(path)  # still locked here, so no other process holds this inode
            except OSError:
                pass
    finally:
        os.close(fd)  # closing releases the flock


def locks_run_dir(arg: str = "run_dir") -> Callable[[F], F]:
    """Decorator: hold the lock of the folder passed as argument ``arg`` while the function runs."""

    def wrap(fn: F) -> F:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            folder = sig.bind(*args, **kwargs).arguments.get(arg)
            if folder is None:
                return fn(*args, **kwargs)
            with run_lock(folder):
                return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap
