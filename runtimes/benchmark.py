"""Compile and profile ONNX models on one or more runtimes: the engine behind ``edgeprune profile``,
torch-free so the on-device agent can call it too. Several (model, runtime) pairs are measured side
by side with ``compare`` (interleaved); one pair with ``Session.profile``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import InvalidConfigError, InvalidDataError
from edgeprune.runtimes.compare import compare
from edgeprune.runtimes.environment import collect
from edgeprune.runtimes.profiling import ProfileConfig
from edgeprune.runtimes.registry import get


def image_feeds(image_path: str | os.PathLike, session) -> dict[str, np.ndarray]:
    """Feeds from an image, letterboxed to the session's single NCHW input (the shared preprocess)."""
    import cv2

    from edgeprune.runtimes.preprocess import preprocess

    if len(session.inputs) != 1 or len(session.inputs[0].shape) != 4:
        raise InvalidConfigError("--image needs a model with one NCHW input")
    img = cv2.imread(str(image_path))
    if img is None:
        raise InvalidDataError(f"cannot read image {image_path}")
    spec = session.inputs[0]
    x, _ = preprocess(img, (int(spec.shape[2]), int(spec.shape[3])))
    return {spec.name: x.astype(spec.dtype)}


def random_session_feeds(session, seed: int = 0) -> dict[str, np.ndarray]:
    """Random feeds of the session's static input shapes (floats in [0, 1))."""
    from edgeprune.runtimes.onnx_info import random_feeds

    return random_feeds(session.inputs, seed=seed)


def profile_onnx(
    models: Sequence[str | os.PathLike],
    runtimes: Sequence[str] = ("onnxruntime",),
    *,
    precision: str = "fp32",
    threads: int | None = None,
    workdir: str | os.PathLike | None = None,
    config: ProfileConfig | Mapping | None = None,
    image: str | os.PathLike | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> dict:
    """Compile every model on every runtime, then profile (interleaved when more than one).

    ``options`` maps runtime name -> extra compile options. Returns a JSON-able report:
    ``{"results": [...], "ratio_to_first": {...}, "env": {...}, "config": {...}}``.
    """
    if not models or not runtimes:
        raise InvalidConfigError("profile needs at least one model and one runtime")
    config = ProfileConfig.make(config)
    base = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="edgeprune-profile-"))
    entries, sessions, feeds = [], {}, {}
    try:
        for mi, model in enumerate(models):
            model = Path(model)
            if not model.is_file():
                raise InvalidConfigError(f"model not found: {model}")
            for rt_name in runtimes:
                rt = get(rt_name)
                key = (
                    f"{model.stem}:{rt_name}"
                    if len(models) == 1 or _unique_stems(models)
                    else f"{mi}:{rt_name}"
                )
                t0 = time.perf_counter()
                art = rt.compile(
                    model,
                    base / f"{mi}-{model.stem}" / rt_name,
                    precision=precision,
                    threads=threads,
                    **dict((options or {}).get(rt_name, {})),
                )
                compile_wall = time.perf_counter() - t0
                s = rt.session(art)
                sessions[key] = s
                feeds[key] = image_feeds(image, s) if image else random_session_feeds(s, seed)
                entries.append(
                    {
                        "name": key,
                        "model": str(model),
                        "runtime": rt_name,
                        "artifact": art,
                        "compile_s": art.meta.get("compile_s", compile_wall),
                    }
                )
        t0 = time.perf_counter()
        if len(sessions) == 1:
            ((key, s),) = sessions.items()
            stats = {key: s.profile(feeds[key], config)}
            ratios = {key: 1.0}
        else:
            result = compare(sessions, feeds, config)
            stats, ratios = dict(result), result.ratio_to_first
        profile_s = time.perf_counter() - t0
    finally:
        for s in sessions.values():
            s.close()
    results = []
    for e in entries:
        art, st = e["artifact"], stats[e["name"]]
        results.append(
            {
                "name": e["name"],
                "model": e["model"],
                "runtime": e["runtime"],
                "runtime_version": art.meta.get("runtime_version"),
                "precision": art.precision,
                "threads": art.options.get("threads"),
                "compile_s": e["compile_s"],
                "artifact": art.to_dict(),
                "stats": st.to_dict(),
            }
        )
    return {
        "results": results,
        "ratio_to_first": ratios,
        "profile_s": profile_s,
        "interleaved": len(sessions) > 1,
        "config": config.__dict__.copy(),
        "input": str(image) if image else f"random (seed {seed})",
        "env": collect(threads=threads, precision=precision),
    }


def _unique_stems(models: Sequence[str | os.PathLike]) -> bool:
    stems = [Path(m).stem for m in models]
    return len(set(stems)) == len(stems)


def format_table(report: Mapping) -> str:
    """A fixed-width table of a ``profile_onnx`` report."""
    head = (
        "name",
        "runtime",
        "version",
        "prec",
        "thr",
        "compile s",
        "median ms",
        "p90 ms",
        "p99 ms",
        "CoV",
        "n",
        "x first",
    )
    rows = [head]
    for r in report["results"]:
        s = r["stats"]
        version = str(r["runtime_version"] or "?").split("-")[0]
        flag = " !" if s.get("unstable") else ""
        rows.append(
            (
                r["name"],
                r["runtime"],
                version,
                r["precision"],
                str(r["threads"] or "-"),
                f"{r['compile_s']:.2f}",
                f"{s['median_ms']:.3f}",
                f"{s['p90_ms']:.3f}",
                f"{s['p99_ms']:.3f}",
                f"{s['cov']:.3f}{flag}",
                str(s["n"]),
                f"{report['ratio_to_first'][r['name']]:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(r["stats"].get("unstable") for r in report["results"]):
        lines.append(
            "! CoV above the threshold after repeats: the machine was noisy; compare medians with care"
        )
    lines.append(
        f"latency includes: {report['results'][0]['stats']['includes']}; "
        f"{'interleaved side by side' if report['interleaved'] else 'single session'}"
    )
    return "\n".join(lines)
