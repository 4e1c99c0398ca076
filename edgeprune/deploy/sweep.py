"""``sweep``: every candidate of a pruning run on every target, measured side by side, knee per target.

Layout of ``out_dir`` (every JSON written atomically)::

    onnx/<cand>.onnx, onnx/<cand>.json       one export per candidate (cache key: plan + weights hash)
    compiled/<target>/<cand>/                 one compiled artifact per candidate x target (artifact.json)
    targets/<target>.json                     the measurement of ALL candidates on that target
    bundles/<target>/                         the target's pick (see edgeprune.deploy.bundle)
    report.md, report.json, plots/*.png       see edgeprune.deploy.report

Resuming vs. side by side: latency differences of a few percent are only meaningful when the
candidates are measured together, interleaved (A B C, B C A, ...) in one ``runtimes.compare`` call,
so the unit of *measurement* is the target: all its candidates are timed in one pass and stored
atomically in ``targets/<target>.json``. A rerun skips every target whose file is current (same
candidate ONNX hashes, target settings and profile config); an interrupted target is measured again
as a whole. Exports and compiles are cached per candidate (x target), so a rerun or a new candidate
recompiles nothing that exists. Remote devices are measured by the device agent, per candidate.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgeprune.deploy.candidate_files import (
    SweepCandidate,
    candidates_from_run,
    candidates_per_target,
    export_candidates,
    metric_interval,
)
from edgeprune.deploy.device_pool import measure_devices_concurrently
from edgeprune.deploy.knee import DEFAULT_TAU, KneePoint, KneeResult, select_knee
from edgeprune.deploy.measure import measure_target
from edgeprune.deploy.targets import Target, inversion_advice, targets_from_config
from edgeprune.errors import EdgepruneError, InvalidConfigError
from edgeprune.fileio import read_json
from edgeprune.options import gather, refuse_unknown
from edgeprune.runlock import locks_run_dir
from edgeprune.runtimes.profiling import LatencyStats, ProfileConfig

# A pick must keep 90% of the unpruned model's primary metric unless told otherwise. Validation sets
# of 200 images drawn with other seeds moved the demo model's mAP50-95 by sd 3.4% (lowest 0.963 x the
# mean; benchmarks/accuracy_noise.py), so 0.9 does not exclude an equal candidate by sampling noise but
# does exclude real losses (0.116 vs 0.244 unpruned was picked without a floor).
DEFAULT_ACCURACY_FLOOR_REL = 0.9
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class KneeOptions:
    """How the knee is chosen: latency tolerance ``tau`` and the accuracy floor (absolute or x unpruned)."""

    tau: float = DEFAULT_TAU
    accuracy_floor: float | None = None
    accuracy_floor_rel: float | None = None

    def for_candidates(self, unpruned_metric: float | None) -> KneeOptions:
        """With neither floor given and candidates that carry metrics: ``DEFAULT_ACCURACY_FLOOR_REL``."""
        if self.accuracy_floor is None and self.accuracy_floor_rel is None and unpruned_metric is not None:
            return replace(self, accuracy_floor_rel=DEFAULT_ACCURACY_FLOOR_REL)
        return self

    def floor(self, unpruned_metric: float | None) -> float | None:
        """The stricter of the two floors as an absolute metric value, or None without one."""
        rel = None if self.accuracy_floor_rel is None or unpruned_metric is None \
            else self.accuracy_floor_rel * unpruned_metric
        floors = [f for f in (self.accuracy_floor, rel) if f is not None]
        return max(floors) if floors else None


@dataclass(frozen=True)
class BundleOptions:
    """What is done with each target's pick: bundled or not, re-evaluated, post-processing, recovery."""

    bundles: bool = True
    evaluator: Callable[[Any], dict] | None = None  # evaluator(detector) -> {metric: value}
    postprocess: dict | None = None
    recovery: Callable[[SweepCandidate], Any] | None = None


_KNEE_KEYWORDS = {k: k for k in ("tau", "accuracy_floor", "accuracy_floor_rel")}
_BUNDLE_KEYWORDS = {k: k for k in ("bundles", "evaluator", "postprocess", "recovery")}


@dataclass
class TargetResult:
    """One target's measurement, knee and pick."""

    target: Target
    record: dict  # the stored targets/<name>.json
    stats: dict[str, LatencyStats]
    knee: KneeResult
    advice: dict[str, str] = field(default_factory=dict)  # inversion slower_id -> rounding advice
    bundle: str | None = None
    pick_accuracy: dict | None = None
    predicted: dict[str, float | None] = field(default_factory=dict)  # latency model, per candidate (ms)
    prediction: dict | None = None  # its accuracy against the measured medians
    refined: dict | None = None  # knee refinement between the two coarse candidates around the knee
    recovery: dict | None = None  # the pick's recovery fine-tune (before/after), when one ran
    run_dir: str | None = None  # the pruning run its candidates came from (per-target: its own run)
    per_target: bool = False  # True: candidates from the target's own run of a per-target prune


@dataclass
class SweepResult:
    """Everything a sweep produced; ``report`` holds the paths of report.md / report.json / plots."""

    out_dir: Path
    candidates: list[SweepCandidate]
    targets: dict[str, TargetResult]
    report: dict = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # target name -> error (other targets go on)


def _knee_for(cands: Sequence[SweepCandidate], rec: dict,
              knee: KneeOptions) -> tuple[dict[str, LatencyStats], KneeResult]:
    stats = {cid: LatencyStats.from_dict(v["stats"]) for cid, v in rec["candidates"].items()}
    pts = [
        KneePoint(c.id, c.sparsity, stats[c.id].samples_ms or [stats[c.id].median_ms], c.metric,
                  metric_interval(c))
        for c in cands
    ]
    return stats, select_knee(pts, tau=knee.tau, accuracy_floor=knee.accuracy_floor,
                              accuracy_floor_rel=knee.accuracy_floor_rel)


def _checked(cands: list[SweepCandidate]) -> list[SweepCandidate]:
    """The candidates in sparsity order, after checking their ids can name files."""
    if not cands:
        raise InvalidConfigError("sweep needs at least one candidate")
    if len({c.id for c in cands}) != len(cands):
        raise InvalidConfigError("candidate ids must be unique")
    bad = [c.id for c in cands if not _ID_RE.match(c.id)]
    if bad:
        raise InvalidConfigError(f"candidate ids {bad} must be letters, digits, '.', '_' or '-' (file names)")
    return sorted(cands, key=lambda c: c.sparsity)


def _hw(size: Any) -> tuple[int, int] | None:
    return None if size is None else ((int(size), int(size)) if isinstance(size, int) else tuple(size))


def run_img_size(run_dir: str | Path) -> tuple[int, int] | None:
    """(H, W) of the example input an iterative-pruning run was made with (its run.json), or None.

    A per-target run folder: that of its first run (all its runs prune the same model at one size).
    """
    runs = _per_target_runs(run_dir)
    path = Path(next(iter(runs.values())) if runs else run_dir) / "run.json"
    if not path.is_file():
        return None
    inputs = (read_json(path).get("fingerprint") or {}).get("inputs") or []
    shape = inputs[0].get("shape") if inputs and isinstance(inputs[0], dict) else None
    return (int(shape[2]), int(shape[3])) if isinstance(shape, list) and len(shape) == 4 else None


def _input_size(run: Any, img_size: Any, example_inputs: Any, model_factory: Callable[[], Any] | None,
                cands: Sequence[SweepCandidate]) -> tuple[int, int] | None:
    """``img_size``, else (without ``example_inputs``) the size the run was pruned at, else the model's."""
    size = _hw(img_size)
    if size is None and example_inputs is None and isinstance(run, (str, Path)):
        size = run_img_size(run)  # the size pruning ran at: the report's FLOPs were counted there
    if size is None and model_factory is not None and example_inputs is None:
        size = _hw(getattr(model_factory(), "img_size", None))
    if any(c.onnx_path is None for c in cands) and size is None and example_inputs is None:
        raise InvalidConfigError(
            "cannot tell the input size to export the candidates at: the run records none and the model "
            "has no img_size; pass img_size=<the size pruning ran at> or example_inputs=<a tensor>")
    return size


def _per_target_runs(run: str | Path) -> dict[str, Path] | None:
    """``{target: run folder}`` when ``run`` is a per-target run folder, else None."""
    from edgeprune.iterative.per_target import read_marker

    return read_marker(run)


@locks_run_dir("out_dir")  # one sweep per output folder at a time
def sweep(
    run: str | Path | Sequence[SweepCandidate],
    targets: Sequence[Any],
    out_dir: str | Path,
    model_factory: Callable[[], Any] | None = None,
    example_inputs: Any = None,
    img_size: int | tuple[int, int] | None = None,
    *,
    knee: KneeOptions | None = None,
    bundle: BundleOptions | None = None,
    profile_config: ProfileConfig | dict | None = None,
    fresh: bool = False,
    report: bool = True,
    latency_models: dict | None = None,
    latency_cache: str | Path | None = None,
    refine: bool = False,
    **options: Any,
) -> SweepResult:
    """Export, compile and profile every candidate on every target; knee, bundle and report per target.

    ``run``: an iterative-pruning run folder (needs ``model_factory``) or a list of ``SweepCandidate``.
    ``targets``: ``Target``s or config dicts ({name, runtime, precision, threads} or {device, host}).
    ``knee``: ``KneeOptions``, or its fields as keywords (``tau``, ``accuracy_floor``,
    ``accuracy_floor_rel``). Accuracy floor: with neither floor given and candidates that carry
    metrics, ``DEFAULT_ACCURACY_FLOOR_REL`` x the unpruned metric (``accuracy_floor_rel=0`` turns it off).
    ``bundle``: ``BundleOptions``, or its fields as keywords: ``bundles`` (write them),
    ``evaluator(detector) -> {metric: value}`` re-measures accuracy of each pick through its bundle,
    ``postprocess``, ``recovery`` fine-tunes each pick first (``edgeprune.deploy.recovery.recovery_hook``).
    ``fresh`` re-measures every target (exports and compiles stay cached when their inputs match).
    Input size: ``img_size``, else ``example_inputs``, else the size the run was pruned at, else the
    model's ``img_size``.
    ``latency_models`` ({target name: LatencyModel}) or ``latency_cache`` (a folder: one model is built
    per target from ``model_factory``) put each candidate's predicted latency beside its measurement.
    ``refine`` measures interpolated one-shot plans between the two candidates around each knee.
    A per-target run folder (``per_target_prune``, marker ``per_target.json``): each target is measured
    on its own run's candidates (ids ``<target>.iter_XX``), so its knee and bundle come from them.
    """
    from tqdm.auto import tqdm

    knee = gather(KneeOptions, knee, options, _KNEE_KEYWORDS, "sweep")
    bundle = gather(BundleOptions, bundle, options, _BUNDLE_KEYWORDS, "sweep")
    refuse_unknown(options, "sweep", [*_KNEE_KEYWORDS, *_BUNDLE_KEYWORDS])
    out_dir = Path(out_dir)
    from_run = isinstance(run, (str, Path))
    tlist = targets_from_config(list(targets))
    runs = _per_target_runs(run) if from_run else None
    if runs is not None:
        own = {k: _checked(v) for k, v in candidates_per_target(runs, [t.name for t in tlist],
                                                                 model_factory).items()}
        cands = _checked([c for v in own.values() for c in v])
    else:
        cands = _checked(candidates_from_run(run, model_factory) if from_run else list(run))
        own = {t.name: cands for t in tlist}
    size = _input_size(run, img_size, example_inputs, model_factory, cands)
    knee = knee.for_candidates(cands[0].metric)
    export_candidates(cands, out_dir, size or (640, 640), example_inputs)
    config = ProfileConfig.make(profile_config)
    results: dict[str, TargetResult] = {}
    failed: dict[str, str] = {}
    # Remote devices measure in parallel (each device one target at a time) while local targets go on here.
    remote = measure_devices_concurrently(tlist, lambda t: measure_target(t, own[t.name], out_dir, config,
                                                                          size, fresh=fresh))
    by_id = {c.id: c for c in cands}
    for t in tqdm(tlist, desc="targets", disable=None):
        try:
            rec = remote[t.name].result() if t.name in remote else \
                measure_target(t, own[t.name], out_dir, config, size, fresh=fresh)
        except EdgepruneError as exc:  # one unreachable device or missing runtime must not stop the rest
            failed[t.name] = f"{type(exc).__name__}: {exc}"
            continue
        stats, kr = _knee_for(own[t.name], rec, knee)
        advice = {i.slower_id: inversion_advice(by_id[i.slower_id].onnx_path, t, own[t.name][0].onnx_path)
                  for i in kr.inversions}
        results[t.name] = TargetResult(t, rec, stats, kr, advice, per_target=runs is not None,
                                       run_dir=str(runs[t.name] if runs else run) if from_run else None)
    res = SweepResult(out_dir, cands, results, failed=failed)
    if (latency_models or latency_cache is not None and model_factory is not None or refine) and results:
        import torch

        x = example_inputs if example_inputs is not None else torch.zeros(1, 3, *(size or (640, 640)))
        if latency_models is None and latency_cache is not None and model_factory is not None:
            from edgeprune.deploy.predicted import build_models

            latency_models = build_models([r.target for r in results.values()], model_factory(), x,
                                          latency_cache)
        if latency_models:
            from edgeprune.deploy.predicted import attach_predictions

            attach_predictions(res, latency_models)
        if refine:
            from edgeprune.deploy.refine import refine_target

            for tr in results.values():
                tr.refined = refine_target(res, tr, x, floor=knee.floor(cands[0].metric))
    if bundle.bundles:
        from edgeprune.deploy.picks import bundle_picks

        bundle_picks(res, evaluator=bundle.evaluator, postprocess=bundle.postprocess,
                     recovery=bundle.recovery)
    if report:
        from edgeprune.deploy.report import write_report

        res.report = write_report(res)
    return res
