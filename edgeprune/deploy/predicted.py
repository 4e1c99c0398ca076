"""Predicted beside measured: each target's latency model predicts every candidate of a sweep, and the
report states how close it came (median relative error, rank correlation). The knee is always chosen
from the measurements; predictions only show how far the search can trust the model.

The latency model predicts how a candidate's latency relates to the unpruned model's; its absolute level
comes from a calibration measured at another moment, and a CPU's level drifts between moments (OpenVINO
here: the same model 13.4 ms in one pass, 20.5 ms in another). So the reported prediction is anchored
on the least sparse candidate measured in the same pass: ``predicted = raw x measured[anchor] /
raw[anchor]``; the accuracy is computed over the other candidates, and the raw predictions are kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgeprune.latency.snap import accuracy

# Targets the issue of trust is judged against (DESIGN.md "Latency in the loop").
GOAL = {"median_rel_error": 0.10, "spearman": 0.9}


def build_models(targets: Sequence[Any], model: Any, example_inputs: Any, cache_dir: str | Path,
                 progress: bool = True) -> dict[str, Any]:
    """One latency model per target (measured on it, or read from ``cache_dir``); failures are skipped."""
    from edgeprune.errors import EdgepruneError
    from edgeprune.latency import build_latency_model, profiler_for

    out = {}
    for t in targets:
        try:
            prof = profiler_for(t, Path(cache_dir) / "devices" / t.name)
            out[t.name] = build_latency_model(model, example_inputs, prof, cache_dir=cache_dir,
                                              multiple=t.multiple, name=t.name, progress=progress)
        except EdgepruneError as exc:  # a target without a model still gets its measured sweep
            print(f"[edgeprune sweep] no latency model for '{t.name}': {exc}", flush=True)
    return out


def attach_predictions(res: Any, models: Mapping[str, Any]) -> None:
    """Set ``predicted`` (candidate -> ms) and ``prediction`` (accuracy summary) on each target result."""
    by_id = {c.id: c for c in res.candidates}
    for name, tr in res.targets.items():
        lm = models.get(name)
        if lm is None:
            continue
        raw = {cid: lm.predict_onnx(by_id[cid].onnx_path) for cid in tr.knee.ids}
        measured = {c: tr.stats[c].median_ms for c in tr.knee.ids}
        pred, anchor = anchored(raw, measured, tr.knee.ids)
        tr.predicted = pred
        rest = [c for c in tr.knee.ids if c != anchor]
        acc = accuracy([pred[c] for c in rest], [measured[c] for c in rest])
        acc["meets_goal"] = (acc["median_rel_error"] is not None and acc["spearman"] is not None
                             and acc["median_rel_error"] <= GOAL["median_rel_error"]
                             and acc["spearman"] >= GOAL["spearman"])
        acc.update(alpha=lm.alpha, fixed_ms=lm.fixed_ms, beta=lm.beta, layers=len(lm.layers),
                   runtime_version=lm.key.get("runtime_version"), anchor=anchor, raw_predicted_ms=raw)
        tr.prediction = acc


def anchored(raw: Mapping[str, float | None], measured: Mapping[str, float],
             order: Sequence[str]) -> tuple[dict[str, float | None], str | None]:
    """Raw predictions scaled so the first predicted candidate of ``order`` equals its measured median.

    Returns (anchored predictions, the anchor's id); unscaled when no candidate can anchor.
    """
    anchor = next((c for c in order if raw.get(c) and measured.get(c)), None)
    if anchor is None:
        return dict(raw), None
    k = measured[anchor] / raw[anchor]
    return {c: (None if v is None else v * k) for c, v in raw.items()}, anchor


def calibration_text(a: dict) -> str:
    """How the layer sum maps to the whole model: ``F ms fixed + A x layers`` or ``A x layers^B``."""
    beta = a.get("beta", 1.0)
    if beta != 1.0:
        return f"{a['alpha']:.3f} x layers^{beta:.2f}"
    return f"{a['fixed_ms']:.3f} ms fixed + {a['alpha']:.2f} x layers"


def prediction_line(tr: Any) -> str | None:
    """One report line on the latency model's accuracy for this target, or None without a model."""
    a = getattr(tr, "prediction", None)
    if not a or not a.get("n"):
        return None
    rho = "n/a" if a["spearman"] is None else f"{a['spearman']:.2f}"
    return (f"Latency model ({a['layers']} conv layers profiled alone at their real sizes, calibrated on the "
            f"whole model: {calibration_text(a)}; anchored on {a.get('anchor')} measured in this pass): "
            "predicted vs measured "
            f"median error {a['median_rel_error']:.1%} (max {a['max_rel_error']:.1%}), rank correlation "
            f"{rho} over {a['n']} candidates"
            + ("" if a["meets_goal"] else f" - outside the goal (<= {GOAL['median_rel_error']:.0%}, "
               f">= {GOAL['spearman']})") + ". The knee is chosen from the measured medians.")
