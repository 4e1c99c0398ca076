"""Bundle each target's pick and, optionally, re-measure its accuracy on the runtime's own output."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

from edgeprune.deploy.bundle import write_bundle
from edgeprune.errors import EdgepruneError
from edgeprune.runtimes.base import Artifact
from edgeprune.runtimes.fileio import read_json, sha256_file, write_json


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


def bundle_picks(
    res, evaluator: Callable[[Any], dict] | None = None, postprocess: dict | None = None
) -> None:
    """Write ``bundles/<target>/`` for every target that has a knee; fills ``bundle``/``pick_accuracy``."""
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
