"""The on-device agent: compile and profile each candidate of a job folder with the local runtime.

Runs without torch and without installation (``python3 edgeprune-agent.pyz run JOB_DIR``, see
``edgeprune.devices.pack``). It validates the whole manifest first (protocol version, paths inside the
job folder, sha256 of every file, the runtime version the job expects) and refuses a bad job with exit
code 2 before measuring anything. ``env --runtime NAME`` reports the environment and that runtime's
version, which the host keys its cached measurements by before it sends any job.
Results are written one candidate at a time, atomically, so an interrupted job resumes where it
stopped. Progress goes to stdout as JSON lines (``{"event": "start" | "environment" | "skipped" |
"compiled" | "profiled" | "failed" | "done" | "error", ...}``) for the host to stream.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import stat
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from edgeprune.errors import EdgepruneError, ProtocolError

EXIT_OK, EXIT_ERROR, EXIT_PROTOCOL = 0, 1, 2
# typing.Dict, not dict[...]: this alias is evaluated at import and the agent runs on Python 3.8
Emit = Callable[[Dict[str, Any]], None]


def print_event(event: dict[str, Any]) -> None:
    """Write one JSON progress line to stdout and flush it (the host reads it live)."""
    sys.stdout.write(json.dumps(event, default=str) + "\n")
    sys.stdout.flush()


def agent_info() -> dict[str, Any]:
    """Who measured: agent version, interpreter, where edgeprune was loaded from, whether torch is loaded."""
    import edgeprune

    return {
        "edgeprune_version": edgeprune.__version__,
        "edgeprune_origin": os.path.dirname(edgeprune.__file__),
        "python": platform.python_version(),
        "executable": sys.executable,
        "torch_loaded": "torch" in sys.modules,
    }


def environment_report(runtime: Optional[str] = None, tegrastats_s: float = 1.0) -> dict[str, Any]:
    """What ``agent env`` prints: the device's environment record and the agent; with ``runtime`` also
    that runtime's version as every result measured with it records it (``MissingDependencyError`` when
    the runtime is not installed here)."""
    from edgeprune.devices import environment

    report: dict[str, Any] = {"environment": environment.collect(tegrastats_s=tegrastats_s, runtime=runtime),
                              "agent": agent_info()}
    if runtime:
        from edgeprune.runtimes import get as get_runtime

        report.update(runtime=runtime, runtime_version=get_runtime(runtime).version())
    return report


def check_runtime_version(manifest: Any, runtime: Any) -> None:
    """Refuse a job keyed by another runtime version than the one installed here (it changed since the
    host asked; measuring now would file new numbers under the old version)."""
    have = runtime.version()
    if manifest.runtime_version is not None and manifest.runtime_version != have:
        raise ProtocolError(
            f"the job expects {manifest.runtime} {manifest.runtime_version}, this device has {have} "
            "(the runtime changed since the host read its version); run the job again"
        )


def _feed_shapes(inputs: list, input_size: Optional[list[int]]) -> dict[str, tuple]:
    """Static shapes for inputs with dynamic dims: batch 1, H and W from the job's input size."""
    h, w = (input_size or [640, 640])[:2]
    shapes = {}
    for spec in inputs:
        dims = list(spec.shape)
        for i, d in enumerate(dims):
            if not (isinstance(d, int) and d > 0):
                dims[i] = (h if i == 2 else w) if len(dims) == 4 and i in (2, 3) else 1
        shapes[spec.name] = tuple(dims)
    return shapes


class _JobLock:
    """An exclusive lock on the job folder, so a leftover agent from a cut connection and its
    successor never measure at the same time (the successor waits; the OS frees it on death)."""

    def __init__(self, job_dir: Path, emit: Emit) -> None:
        self.path, self.emit, self.fd = job_dir / ".lock", emit, None

    def __enter__(self) -> _JobLock:
        try:
            import fcntl
        except ImportError:  # not POSIX: no locking
            return self
        self.fd = open_lock_file(self.path)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.emit({"event": "waiting", "reason": "another agent holds this job; waiting for it"})
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)


def open_lock_file(path: Path) -> int:
    """Open (or create) a lock file without following a link and without truncating anything.

    A job folder arrives from elsewhere: ``.lock`` may be a symlink planted to make the agent open a
    file outside the folder. O_NOFOLLOW refuses a link as the last component; the fstat check refuses
    anything that is not a regular file (a FIFO would block, a device would be written to).
    """
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    if os.path.islink(path):
        raise ProtocolError(f"{path} is a symbolic link; remove it (the agent only locks a plain file)")
    try:
        fd = os.open(str(path), flags | getattr(os, "O_NONBLOCK", 0), 0o600)
    except OSError as exc:
        raise ProtocolError(f"cannot open the job lock {path} ({exc.strerror}); remove it and run again") \
            from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ProtocolError(f"{path} is not a regular file; remove it (the agent only locks a plain file)")
    return fd


def check_outputs_inside(job: Path, candidate_ids: list) -> None:
    """Refuse a job whose output folders or files are links: writing through them would land outside."""
    root = job.resolve()
    places = [job / "results", job / "work"]
    places += [job / "results" / f"{cid}.json" for cid in candidate_ids]
    if (job / "work").is_dir() and not (job / "work").is_symlink():
        places += sorted((job / "work").iterdir())
    for place in places:
        if place.is_symlink():
            raise ProtocolError(
                f"'{place.relative_to(job)}' in the job folder is a symbolic link; the agent writes only "
                "inside the job folder (remove the link and run again)"
            )
        if place.exists() and root not in place.resolve().parents:
            raise ProtocolError(f"'{place.relative_to(job)}' resolves outside the job folder")


def run_job(
    job_dir: str | os.PathLike, emit: Emit = print_event, tegrastats_s: float = 1.0
) -> dict[str, Any]:
    """Measure every candidate of a job folder that has no current result; returns a summary."""
    from edgeprune.devices import environment
    from edgeprune.devices.protocol import (
        load_current_result,
        read_job_manifest,
        result_path,
        verify_candidate,
    )
    from edgeprune.fileio import write_json
    from edgeprune.runtimes import get as get_runtime

    job = Path(job_dir)
    manifest = read_job_manifest(job)
    paths = {c.id: verify_candidate(job, c) for c in manifest.candidates}  # refuse before any work
    check_outputs_inside(job, [c.id for c in manifest.candidates])
    opts_sha = manifest.options_sha256()
    if manifest.runtime_version is not None:  # refuse before any work, like a bad file
        check_runtime_version(manifest, get_runtime(manifest.runtime))
    summary = {"ok": 0, "skipped": 0, "failed": 0}
    with _JobLock(job, emit):
        pending = [c for c in manifest.candidates if load_current_result(job, c, opts_sha) is None]
        emit({"event": "start", "job_id": manifest.job_id, "candidates": len(manifest.candidates),
              "pending": len(pending), "runtime": manifest.runtime, "agent": agent_info()})
        if not pending:
            summary["skipped"] = len(manifest.candidates)
            emit({"event": "done", **summary})
            return summary
        env = environment.collect(tegrastats_s=tegrastats_s, runtime=manifest.runtime)
        checks = environment.evaluate_checks(env, manifest.setup_checks)
        warnings = environment.warnings_from(checks)
        emit({"event": "environment", "checks": checks, "warnings": warnings})
        runtime = get_runtime(manifest.runtime)
        compile_opts = {k: v for k, v in manifest.runtime_options.items() if v is not None}
        for cand in manifest.candidates:
            if cand not in pending:
                summary["skipped"] += 1
                emit({"event": "skipped", "candidate": cand.id, "reason": "current result exists"})
                continue
            # keyed by file hash: a rebuilt candidate never meets a stale artifact, while an unchanged one
            # lets runtimes with a build cache (TensorRT engines) reuse what they built before
            workdir = job / "work" / f"{cand.id}-{cand.sha256[:12]}"
            check_outputs_inside(job, [cand.id])  # again: the folder may have changed while we measured
            record: dict[str, Any] = {
                "protocol_version": manifest.protocol_version, "job_id": manifest.job_id,
                "candidate": cand.id, "file": cand.file, "sha256": cand.sha256, "options_sha256": opts_sha,
                "runtime": manifest.runtime, "runtime_version": runtime.version(),
                "runtime_options": manifest.runtime_options, "profile_options": manifest.profile_options,
            }
            try:
                t0 = time.perf_counter()
                artifact = runtime.compile(paths[cand.id], workdir, **compile_opts)
                compile_s = time.perf_counter() - t0
                emit({"event": "compiled", "candidate": cand.id, "seconds": round(compile_s, 3)})
                with runtime.session(artifact) as sess:
                    from edgeprune.runtimes.onnx_info import random_feeds

                    feeds = random_feeds(sess.inputs, shapes=_feed_shapes(sess.inputs, manifest.input_size))
                    stats = sess.profile(feeds, **manifest.profile_options)
                record.update(status="ok", compile_s=compile_s, artifact=artifact.to_dict(),
                              latency=stats.to_dict(),
                              input_shapes={k: list(v.shape) for k, v in feeds.items()})
                summary["ok"] += 1
            except EdgepruneError as exc:
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}")
                summary["failed"] += 1
            except Exception as exc:  # a runtime's own exception: record it, go on with the next one
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}",
                              traceback=traceback.format_exc()[-2000:])
                summary["failed"] += 1
            record.update(environment=env, checks=checks, warnings=warnings, agent=agent_info(),
                          finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            write_json(result_path(job, cand.id), record)
            if record["status"] == "ok":
                emit({"event": "profiled", "candidate": cand.id, "median_ms": stats.median_ms,
                      "warnings": warnings, "result": record})
            else:
                emit({"event": "failed", "candidate": cand.id, "error": record["error"], "result": record})
    emit({"event": "done", **summary})
    return summary


def main(argv: Optional[list[str]] = None) -> int:
    """``agent run JOB_DIR`` | ``agent field-check`` | ``agent env [--runtime NAME]`` | ``agent version``;
    exit 2 on a refused job (field-check: 0 ok, 1 a check failed, 3 incomplete)."""
    parser = argparse.ArgumentParser(prog="edgeprune-agent", description="edgeprune on-device agent")
    sub = parser.add_subparsers(dest="cmd")
    p_run = sub.add_parser("run", help="profile the candidates of a job folder")
    p_run.add_argument("job_dir")
    p_run.add_argument("--tegrastats-seconds", type=float, default=1.0)
    p_fc = sub.add_parser("field-check", help="exercise every TensorRT path here; write one JSON report")
    p_fc.add_argument("--out", default="field-check.json", help="report file (default field-check.json)")
    p_fc.add_argument("--work", default=None, help="folder for engines and logs (default: beside --out)")
    p_fc.add_argument("--no-trtexec", action="store_true", help="skip the trtexec check")
    p_env = sub.add_parser("env", help="print the device environment as JSON")
    p_env.add_argument("--runtime", default=None,
                       help="also report this runtime's version (and import only its SDK)")
    p_env.add_argument("--tegrastats-seconds", type=float, default=1.0)
    sub.add_parser("version", help="print the agent's edgeprune version and interpreter")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "run":
            run_job(args.job_dir, tegrastats_s=args.tegrastats_seconds)  # failures are in the results
            return EXIT_OK
        if args.cmd == "field-check":
            from edgeprune.devices.field_check import run_field_check

            return run_field_check(args.out, args.work, trtexec=not args.no_trtexec)
        if args.cmd == "env":
            report = environment_report(args.runtime, tegrastats_s=args.tegrastats_seconds)
            print(json.dumps(report, indent=2, default=str))
            return EXIT_OK
        if args.cmd == "version":
            print(json.dumps(agent_info()))
            return EXIT_OK
        parser.print_help()
        return EXIT_ERROR
    except ProtocolError as exc:
        _safe_emit({"event": "error", "kind": "protocol", "message": str(exc)})
        print(f"edgeprune-agent: refused: {exc}", file=sys.stderr)
        return EXIT_PROTOCOL
    except EdgepruneError as exc:
        _safe_emit({"event": "error", "kind": type(exc).__name__, "message": str(exc)})
        print(f"edgeprune-agent: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # the host went away; results written so far stay on disk
        return EXIT_ERROR


def _safe_emit(event: dict[str, Any]) -> None:
    try:
        print_event(event)
    except (BrokenPipeError, OSError):
        pass


if __name__ == "__main__":
    sys.exit(main())
