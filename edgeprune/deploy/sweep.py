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
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeprune.deploy.device_pool import measure_devices_concurrently
from edgeprune.deploy.knee import DEFAULT_TAU, KneePoint, KneeResult, select_knee
from edgeprune.deploy.targets import Target, inversion_advice, targets_from_config
from edgeprune.errors import EdgepruneError, InvalidConfigError
from edgeprune.fileio import read_json, sha256_file, write_json
from edgeprune.runlock import locks_run_dir
from edgeprune.runtimes import registry
from edgeprune.runtimes.base import Artifact
from edgeprune.runtimes.compare import compare
from edgeprune.runtimes.profiling import LatencyStats, ProfileConfig

# A pick must keep 90% of the unpruned model's primary metric unless told otherwise. Validation sets
# of 200 images drawn with other seeds moved the demo model's mAP50-95 by sd 3.4% (lowest 0.963 x the
# mean; benchmarks/accuracy_noise.py), so 0.9 does not exclude an equal candidate by sampling noise but
# does exclude real losses (0.116 vs 0.244 unpruned was picked without a floor).
DEFAULT_ACCURACY_FLOOR_REL = 0.9
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
get_runtime = registry.get  # module-level so tests can count compile/profile calls
compare_sessions = compare


@dataclass
class Candidate:
    """One pruned model to sweep: an ONNX file, or a model (exported once) with its facts."""

    id: str
    sparsity: float  # parameter sparsity: fraction of the unpruned model's parameters removed
    onnx_path: str | None = None
    model: Any = None  # nn.Module, or a zero-argument callable returning one (loaded only if needed)
    params: int | None = None
    flops: int | None = None
    metrics: dict = field(default_factory=dict)
    primary: str | None = None
    plan_sha256: str | None = None
    cache_key: str | None = None  # identifies the weights + plan; reuses an earlier export when equal

    @property
    def metric(self) -> float | None:
        if self.primary and self.primary in self.metrics:
            return float(self.metrics[self.primary])
        return None


def metric_interval(c: Candidate) -> tuple[float, float] | None:
    """The bootstrap interval of the candidate's primary metric, when its evaluator measured one."""
    lo, hi = (c.metrics.get(f"{c.primary}_{end}") for end in ("low", "high"))
    return None if lo is None or hi is None else (float(lo), float(hi))


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


@dataclass
class SweepResult:
    """Everything a sweep produced; ``report`` holds the paths of report.md / report.json / plots."""

    out_dir: Path
    candidates: list[Candidate]
    targets: dict[str, TargetResult]
    report: dict = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # target name -> error (other targets go on)


def candidates_from_run(run_dir: str | Path, model_factory: Callable[[], Any] | None) -> list[Candidate]:
    """The finished candidates of an iterative pruning run (models are loaded only when exported)."""
    from edgeprune.iterative import candidates as ic

    run_dir = Path(run_dir)
    out = []
    for m in ic.list_candidates(run_dir):
        it = int(m["iteration"])
        d = ic.iter_dir(run_dir, it)
        key = "-".join(sha256_file(d / f)[:16] for f in ("plan.json", "weights.pt") if (d / f).exists())

        def load(it=it):
            if model_factory is None:
                raise InvalidConfigError("sweeping a run folder needs model_factory (the unpruned model)")
            return ic.load_candidate(run_dir, it, model_factory)

        out.append(
            Candidate(
                id=d.name,
                sparsity=float(m.get("param_sparsity", 0.0)),
                model=load,
                params=m.get("params"),
                flops=m.get("flops"),
                metrics=dict(m.get("metrics", {})),
                primary=_primary(m),
                plan_sha256=m.get("plan_sha256") or _plan_sha(d / "plan.json"),
                cache_key=key or None,
            )
        )
    if not out:
        raise InvalidConfigError(f"run folder {run_dir} has no finished candidate (no iter_XX/metrics.json)")
    return out


def _primary(m: dict) -> str | None:
    """The primary metric's name: ``primary``, else the metric equal to ``metric``, else the first."""
    metrics = m.get("metrics") or {}
    if m.get("primary"):
        return m["primary"]
    same = [k for k, v in metrics.items() if m.get("metric") is not None and v == m["metric"]]
    return same[0] if same else next(iter(metrics), None)


def _plan_sha(path: Path) -> str | None:
    if not path.exists():
        return None
    from edgeprune.pruning import PruningPlan

    return PruningPlan.from_json(path.read_text(encoding="utf-8")).sha256()


def export_candidates(
    cands: Sequence[Candidate],
    out_dir: Path,
    img_size: tuple[int, int],
    example_inputs: Any = None,
    class_names: list[str] | None = None,
) -> None:
    """Export each candidate to ``onnx/<id>.onnx`` once; sets ``onnx_path``. Cached by ``cache_key``."""
    from tqdm.auto import tqdm

    for c in tqdm(cands, desc="export", disable=None, leave=False):
        if c.onnx_path is not None:
            continue
        path, info_path = out_dir / "onnx" / f"{c.id}.onnx", out_dir / "onnx" / f"{c.id}.json"
        if c.cache_key and path.exists() and info_path.exists():
            info = read_json(info_path)
            if info.get("cache_key") == c.cache_key and info.get("onnx_sha256") == sha256_file(path):
                c.onnx_path = str(path)
                continue
        if c.model is None:
            raise InvalidConfigError(f"candidate '{c.id}' has neither an ONNX file nor a model")
        from edgeprune.export import export_onnx

        model = c.model() if callable(c.model) and not hasattr(c.model, "state_dict") else c.model
        if example_inputs is None:
            import torch

            example_inputs = torch.zeros(1, 3, *img_size)
        names = class_names or list(getattr(model, "names", []) or [])
        meta = {"sparsity": c.sparsity, "plan_sha256": c.plan_sha256, "candidate": c.id}
        if names:
            meta["class_names"] = names
        res = export_onnx(model.eval(), example_inputs, path, metadata=meta)
        c.onnx_path = str(path)
        write_json(
            info_path,
            {
                "cache_key": c.cache_key,
                "onnx_sha256": sha256_file(path),
                "max_abs_diff": getattr(res, "max_abs_diff", None),
            },
        )


def _compile_cached(rt, target: Target, cand: Candidate, workdir: Path) -> tuple[Artifact, bool]:
    """The candidate's artifact for ``target``, compiled unless a matching one exists in ``workdir``."""
    onnx_sha = sha256_file(cand.onnx_path)
    if (workdir / "artifact.json").exists():
        try:
            art = Artifact.load(workdir)
            if (
                art.onnx_sha256 == onnx_sha
                and art.precision == target.precision
                and art.meta.get("runtime_version") in (None, rt.version())
                and art.options.get("threads") == target.threads
                and all(art.options.get(k) == v for k, v in target.options.items())
            ):
                return art, False
        except Exception:  # a half-written or foreign artifact folder: rebuild it
            pass
    art = rt.compile(
        cand.onnx_path, workdir, precision=target.precision, threads=target.threads, **target.options
    )
    return art, True


def _feeds(session, img_size: tuple[int, int] | None) -> dict[str, np.ndarray]:
    # a fixed pseudo-image in [0, 1]: inputs never affect the conv arithmetic's cost here
    rng = np.random.default_rng(0)
    feeds = {}
    for spec in session.inputs:
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in spec.shape]
        if (
            img_size is not None
            and len(shape) == 4
            and not all(isinstance(d, int) and d > 0 for d in spec.shape)
        ):
            shape = [1, shape[1], *img_size]
        feeds[spec.name] = rng.random(shape, dtype=np.float32).astype(spec.dtype)
    return feeds


def measure_target(
    target: Target,
    cands: Sequence[Candidate],
    out_dir: Path,
    config: ProfileConfig,
    img_size: tuple[int, int] | None,
    fresh: bool = False,
) -> dict:
    """Compile (cached) and profile all candidates on one local target together; returns the record."""
    key = {
        "target": target.measure_key(),
        "profile": asdict(config),
        "candidates": {c.id: sha256_file(c.onnx_path) for c in cands},
    }
    rec_path = out_dir / "targets" / f"{target.name}.json"
    if rec_path.exists() and not fresh:
        rec = read_json(rec_path)
        if rec.get("key") == key:
            return rec
    if target.remote:
        return _measure_remote(target, cands, key, rec_path, config)
    rt = get_runtime(target.runtime)
    arts, compiled = {}, {}
    for c in cands:
        t0 = time.perf_counter()
        arts[c.id], built = _compile_cached(rt, target, c, out_dir / "compiled" / target.name / c.id)
        compiled[c.id] = {"compiled_now": built, "seconds": time.perf_counter() - t0}
    sessions = {}
    try:
        for c in cands:
            sessions[c.id] = rt.session(arts[c.id])
        feeds = _feeds(next(iter(sessions.values())), img_size)
        result = compare_sessions(sessions, feeds, config)
    finally:
        for s in sessions.values():
            s.close()
    rec = {
        "key": key,
        "target": target.to_dict(),
        "runtime_version": rt.version(),
        "measured": "side by side in one interleaved pass (runtimes.compare)",
        "interleaved": {"batch": result.batch, "rotate": result.rotate},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "candidates": {
            c.id: {
                "artifact_dir": str(Path(arts[c.id].path).parent),
                "compile": compiled[c.id],
                "stats": result[c.id].to_dict(),
            }
            for c in cands
        },
    }
    write_json(rec_path, rec)
    return rec


def _measure_remote(target: Target, cands, key, rec_path: Path, config: ProfileConfig) -> dict:
    """Measure on a device through ``edgeprune.devices`` (the agent times candidates one by one)."""
    from edgeprune.devices.profile_schema import load_profile
    from edgeprune.devices.runner import profile_on_devices
    from edgeprune.errors import DeviceError

    prof = load_profile(target.device)
    jobs = profile_on_devices(
        {c.id: c.onnx_path for c in cands}, [prof], rec_path.parent.parent / "devices" / target.name,
        hosts={prof.name: target.host} if target.host else None, profile_options=asdict(config),
    )
    job = jobs[prof.name]
    failed = {cid: r.get("error") for cid, r in job.results.items() if r.get("status") != "ok"}
    if job.error is not None or failed or set(job.results) != {c.id for c in cands}:
        raise DeviceError(f"target '{target.name}' on device '{prof.name}': "
                          f"{job.error or failed or 'results missing'}")
    first = next(iter(job.results.values()))
    rec = {
        "key": key, "target": target.to_dict(), "runtime_version": first.get("runtime_version"),
        "measured": "on the device by the edgeprune agent, one candidate after another",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "candidates": {cid: {"stats": {**r["latency"], "env": r.get("environment", {})}}
                       for cid, r in job.results.items()},
    }
    write_json(rec_path, rec)
    return rec


def _knee_for(
    target: Target,
    cands: Sequence[Candidate],
    rec: dict,
    tau: float,
    floor: float | None,
    floor_rel: float | None,
) -> tuple[dict[str, LatencyStats], KneeResult]:
    stats = {cid: LatencyStats.from_dict(v["stats"]) for cid, v in rec["candidates"].items()}
    pts = [
        KneePoint(c.id, c.sparsity, stats[c.id].samples_ms or [stats[c.id].median_ms], c.metric,
                  metric_interval(c))
        for c in cands
    ]
    return stats, select_knee(pts, tau=tau, accuracy_floor=floor, accuracy_floor_rel=floor_rel)


def _hw(size: Any) -> tuple[int, int] | None:
    return None if size is None else ((int(size), int(size)) if isinstance(size, int) else tuple(size))


def run_img_size(run_dir: str | Path) -> tuple[int, int] | None:
    """(H, W) of the example input an iterative-pruning run was made with (its run.json), or None."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    inputs = (read_json(path).get("fingerprint") or {}).get("inputs") or []
    shape = inputs[0].get("shape") if inputs and isinstance(inputs[0], dict) else None
    return (int(shape[2]), int(shape[3])) if isinstance(shape, list) and len(shape) == 4 else None


@locks_run_dir("out_dir")  # one sweep per output folder at a time
def sweep(
    run: str | Path | Sequence[Candidate],
    targets: Sequence[Any],
    out_dir: str | Path,
    model_factory: Callable[[], Any] | None = None,
    example_inputs: Any = None,
    img_size: int | tuple[int, int] | None = None,
    evaluator: Callable[[Any], dict] | None = None,
    tau: float = DEFAULT_TAU,
    accuracy_floor: float | None = None,
    accuracy_floor_rel: float | None = None,
    profile_config: ProfileConfig | dict | None = None,
    fresh: bool = False,
    bundles: bool = True,
    report: bool = True,
    postprocess: dict | None = None,
    latency_models: dict | None = None,
    latency_cache: str | Path | None = None,
    refine: bool = False,
    recovery: Callable[[Candidate], Any] | None = None,
) -> SweepResult:
    """Export, compile and profile every candidate on every target; knee, bundle and report per target.

    ``run``: an iterative-pruning run folder (needs ``model_factory``) or a list of ``Candidate``.
    ``targets``: ``Target``s or config dicts ({name, runtime, precision, threads} or {device, host}).
    ``evaluator(detector) -> {metric: value}`` re-measures accuracy of each pick through its bundle.
    ``fresh`` re-measures every target (exports and compiles stay cached when their inputs match).
    Input size: ``img_size``, else ``example_inputs``, else the size the run was pruned at, else the
    model's ``img_size``. Accuracy floor: with neither floor given and candidates that carry metrics,
    ``DEFAULT_ACCURACY_FLOOR_REL`` x the unpruned metric (``accuracy_floor_rel=0`` turns it off).
    ``latency_models`` ({target name: LatencyModel}) or ``latency_cache`` (a folder: one model is built
    per target from ``model_factory``) put each candidate's predicted latency beside its measurement.
    ``refine`` measures interpolated one-shot plans between the two candidates around each knee.
    ``recovery`` fine-tunes each pick before bundling (``edgeprune.deploy.recovery.recovery_hook``).
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    cands = list(run) if not isinstance(run, (str, Path)) else candidates_from_run(run, model_factory)
    if not cands:
        raise InvalidConfigError("sweep needs at least one candidate")
    if len({c.id for c in cands}) != len(cands):
        raise InvalidConfigError("candidate ids must be unique")
    bad = [c.id for c in cands if not _ID_RE.match(c.id)]
    if bad:
        raise InvalidConfigError(f"candidate ids {bad} must be letters, digits, '.', '_' or '-' (file names)")
    cands.sort(key=lambda c: c.sparsity)
    tlist = targets_from_config(list(targets))
    size = _hw(img_size)
    if size is None and example_inputs is None and isinstance(run, (str, Path)):
        size = run_img_size(run)  # the size pruning ran at: the report's FLOPs were counted there
    if size is None and model_factory is not None and example_inputs is None:
        size = _hw(getattr(model_factory(), "img_size", None))
    if any(c.onnx_path is None for c in cands) and size is None and example_inputs is None:
        raise InvalidConfigError(
            "cannot tell the input size to export the candidates at: the run records none and the model "
            "has no img_size; pass img_size=<the size pruning ran at> or example_inputs=<a tensor>")
    if accuracy_floor is None and accuracy_floor_rel is None and cands[0].metric is not None:
        accuracy_floor_rel = DEFAULT_ACCURACY_FLOOR_REL
    export_candidates(cands, out_dir, size or (640, 640), example_inputs)
    config = ProfileConfig.make(profile_config)
    results: dict[str, TargetResult] = {}
    failed: dict[str, str] = {}
    # Remote devices measure in parallel (each device one target at a time) while local targets go on here.
    remote = measure_devices_concurrently(tlist, lambda t: measure_target(t, cands, out_dir, config, size,
                                                                          fresh=fresh))
    for t in tqdm(tlist, desc="targets", disable=None):
        try:
            rec = remote[t.name].result() if t.name in remote else \
                measure_target(t, cands, out_dir, config, size, fresh=fresh)
        except EdgepruneError as exc:  # one unreachable device or missing runtime must not stop the rest
            failed[t.name] = f"{type(exc).__name__}: {exc}"
            continue
        stats, knee = _knee_for(t, cands, rec, tau, accuracy_floor, accuracy_floor_rel)
        by_id = {c.id: c for c in cands}
        ref = cands[0].onnx_path
        advice = {i.slower_id: inversion_advice(by_id[i.slower_id].onnx_path, t, ref)
                  for i in knee.inversions}
        results[t.name] = TargetResult(t, rec, stats, knee, advice)
    res = SweepResult(out_dir, cands, results, failed=failed)
    if latency_models is None and latency_cache is not None and model_factory is not None and results:
        import torch

        from edgeprune.deploy.predicted import build_models

        x = example_inputs if example_inputs is not None else torch.zeros(1, 3, *(size or (640, 640)))
        latency_models = build_models([r.target for r in results.values()], model_factory(), x, latency_cache)
    if latency_models:
        from edgeprune.deploy.predicted import attach_predictions

        attach_predictions(res, latency_models)
    if refine:
        import torch

        from edgeprune.deploy.refine import refine_target

        x = example_inputs if example_inputs is not None else torch.zeros(1, 3, *(size or (640, 640)))
        ref = cands[0].metric
        floors = [f for f in (accuracy_floor, None if accuracy_floor_rel is None or ref is None
                              else accuracy_floor_rel * ref) if f is not None]
        for tr in results.values():
            tr.refined = refine_target(res, tr, x, floor=max(floors) if floors else None)
    if bundles:
        from edgeprune.deploy.picks import bundle_picks

        bundle_picks(res, evaluator=evaluator, postprocess=postprocess, recovery=recovery)
    if report:
        from edgeprune.deploy.report import write_report

        res.report = write_report(res)
    return res
