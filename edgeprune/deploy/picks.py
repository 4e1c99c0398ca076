"""Bundle each target's pick and, optionally, re-measure its accuracy on the runtime's own output."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from edgeprune.deploy.bundle import write_bundle
from edgeprune.errors import EdgepruneError
from edgeprune.fileio import read_json, sha256_file, write_json
from edgeprune.runtimes.base import Artifact


def _artifact_for(tr, cand_id: str) -> Artifact | None:
    entry = tr.record["candidates"].get(cand_id, {})
    d = entry.get("artifact_dir")
    if not d or not (Path(d) / "artifact.json").exists():
        return None  # remote targets: the artifact was built on the device
    return Artifact.load(d)


def _pick_accuracy(res, tr, bundle: Path, cand, evaluator: Callable[[Any], dict]) -> dict:
    """Evaluate the pick through ``load_bundle`` (cached in targets/<name>.pick.json)."""
    from edgeprune.runtimes.bundle import load_bundle

    key = {
        "onnx_sha256": sha256_file(cand.onnx_path),
        "target": tr.target.measure_key(),
        "evaluator": getattr(evaluator, "settings", lambda: repr(evaluator))(),
    }
    path = res.out_dir / "targets" / f"{tr.target.name}.pick.json"
    if path.exists():
        old = read_json(path)
        if old.get("key") == key:
            return old["accuracy"]
    try:
        with load_bundle(bundle, verify=True) as det:
            metrics = {k: float(v) for k, v in evaluator(det).items()}
        acc = {"source": f"re-measured on {tr.target.runtime} output through the bundle", "metrics": metrics}
    except EdgepruneError as exc:  # e.g. a remote target's runtime is not installed here
        acc = {"source": "not re-measured", "error": str(exc)}
    write_json(path, {"key": key, "accuracy": acc})
    return acc


def _recovered(res, tr, cand, recovery: Callable | None):
    """The pick after its recovery fine-tune: (candidate, artifact, info), or None without recovery."""
    if recovery is None:
        return None
    got = recovery(cand)
    if got is None:
        return None
    rc, info = got
    art = None
    if rc is not cand and not tr.target.remote:
        from edgeprune.deploy.candidate_files import compile_cached
        from edgeprune.runtimes import registry

        workdir = res.out_dir / "compiled" / tr.target.name / rc.id
        art, _ = compile_cached(registry.get(tr.target.runtime), tr.target, rc, workdir)
    elif rc is cand:
        art = _artifact_for(tr, cand.id)
    return rc, art, info


def bundle_picks(
    res, evaluator: Callable[[Any], dict] | None = None, postprocess: dict | None = None,
    recovery: Callable[[Any], Any] | None = None,
) -> None:
    """Write ``bundles/<target>/`` for every target that has a knee; fills ``bundle``/``pick_accuracy``.

    ``recovery(candidate) -> (recovered candidate, info) | None`` fine-tunes the pick before it is
    bundled (``edgeprune.deploy.recovery.recovery_hook``); the bundle then carries accuracy before and
    after. The recovered model has the pick's architecture, so the pick's latency stands for it.
    """
    by_id = {c.id: c for c in res.candidates}
    for name, tr in res.targets.items():
        if tr.knee.candidate_id is None:
            continue
        cand = by_id[tr.knee.candidate_id]
        stats = tr.stats[cand.id]
        t = tr.target
        env = stats.env or {}
        art = _artifact_for(tr, cand.id)
        accuracy = {
            "primary": cand.primary,
            "metrics": cand.metrics,
            "source": "candidate metrics.json (PyTorch evaluation)",
        }
        rec = _recovered(res, tr, cand, recovery)
        if rec is not None:
            cand, art, info = rec[0], rec[1], rec[2]
            tr.recovery = info
            accuracy = {
                "primary": cand.primary,
                "metrics": info["after"],
                "before_recovery": info["before"],
                "recovery": {k: v for k, v in info.items() if k not in ("before", "after")},
                "source": "PyTorch evaluation after the recovery fine-tune (before: the pick as pruned)",
            }
        runtime = {
            "name": t.runtime,
            "version": tr.record.get("runtime_version") or env.get("runtime_version"),
            "precision": t.precision,
            "threads": t.threads,
            "options": t.options,
        }
        device = {
            "target": name,
            "remote": t.remote,
            "device_profile": t.device,
            "host": t.host,
            "environment": {k: v for k, v in env.items() if k != "measured_with"},
        }
        model_info = {
            "candidate": cand.id,
            "param_sparsity": cand.sparsity,
            "params": cand.params,
            "flops": cand.flops,
            "knee_reason": tr.knee.reason,
        }
        if rec is not None:
            model_info["latency_note"] = "measured on the pick before recovery (same architecture)"
        bundle = res.out_dir / "bundles" / name

        # `accuracy` is a dict that may gain the runtime-side measurement below; partial keeps the reference
        write = functools.partial(
            write_bundle,
            bundle,
            cand.onnx_path,
            runtime=runtime,
            artifact=art,
            postprocess=postprocess,
            device=device,
            model_info=model_info,
            latency=stats.to_dict(samples=False),
            accuracy=accuracy,
        )
        write()
        tr.bundle = str(bundle)
        if evaluator is not None:
            tr.pick_accuracy = _pick_accuracy(res, tr, bundle, cand, evaluator)
            if tr.pick_accuracy.get("metrics"):
                accuracy["runtime_measured"] = tr.pick_accuracy
                write()  # again, so the manifest carries the runtime-side accuracy too (files are copies)
