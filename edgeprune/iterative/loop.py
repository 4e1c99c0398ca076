"""The paper's loop, automated and resumable: sensitivity -> select -> prune -> fine-tune -> evaluate.

Each phase leaves a file behind (see ``candidates.py``); a rerun of the same call skips every phase
whose file exists, so a run killed at any point (even SIGKILL) continues where it stopped. Each
iteration starts from its predecessor *as loaded from disk*, so an interrupted and an uninterrupted
run take exactly the same path and, with the same seeds, produce the same candidates.
"""

from __future__ import annotations

import copy
import random
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_text, read_json, write_json
from edgeprune.iterative.candidates import (
    CandidateRecord,
    format_table,
    is_finished,
    iter_dir,
    read_record,
    replay,
    save_weights,
)
from edgeprune.iterative.executors import Executor
from edgeprune.iterative.hashing import describe_callable, input_signature, state_dict_sha256
from edgeprune.iterative.options import KEYWORDS, LatencyOptions, PruneOptions, StopCriteria
from edgeprune.iterative.selection import explain, select
from edgeprune.iterative.sensitivity import _evaluate, sensitivity
from edgeprune.latency.snap import snap_rates
from edgeprune.options import gather, refuse_unknown
from edgeprune.runlock import locks_run_dir

RUN_FORMAT = 1


@dataclass
class IterativeResult:
    """What ``iterative_prune`` produced; every candidate is also on disk in ``run_dir``."""

    run_dir: Path
    candidates: list[CandidateRecord]  # each finished candidate (its metrics.json)
    final_iteration: int  # the last candidate that meets the metric floor
    stop_reason: str
    model: nn.Module | None = field(default=None, repr=False)  # the final candidate

    def table(self) -> str:
        """Markdown summary table (iteration, params, GFLOPs, sparsities, metrics)."""
        return format_table(self.candidates)


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _log(progress: bool, msg: str) -> None:
    if progress:
        print(f"[edgeprune prune] {msg}", file=sys.stderr, flush=True)


def _fingerprint(model: nn.Module, example_inputs: Any, evaluator: Any, finetune: Any, prune: PruneOptions,
                 latency: LatencyOptions) -> dict[str, Any]:
    """Everything the candidates depend on. Stop criteria are left out: a run may be extended."""
    fp = {
        "format": RUN_FORMAT,
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights_sha256": state_dict_sha256(model),
        "inputs": input_signature(example_inputs),
        "evaluator": describe_callable(evaluator),
        "finetune": describe_callable(finetune),
        "finetune_steps": int(prune.finetune_steps),
        "selection": prune.selection.to_dict(),
        "rates": list(prune.rates),
        "criterion": prune.criterion,
        "round_to": int(prune.round_to),
        "seed": int(prune.seed),
    }
    if latency.models:  # selection and snapping follow them (their settings, not their noisy numbers)
        fp["latency"] = {"targets": [{"name": lm.name, **lm.key} for lm in latency.models],
                         "snap": bool(latency.snap)}
    return fp


def _open_run(run_dir: Path, fingerprint: dict, targets: dict, fresh: bool, progress: bool) -> None:
    """Create ``run.json``, or check that an existing run was made with the same fingerprint."""
    run_json = run_dir / "run.json"
    if fresh and run_dir.exists() and any(run_dir.iterdir()):
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(run_dir), str(aside))  # moved, not deleted: the user may still want it
        _log(progress, f"fresh=True: moved the previous run to {aside}")
    if run_json.exists():
        old = read_json(run_json).get("fingerprint", {})
        differing = sorted(k for k in set(old) | set(fingerprint) if old.get(k) != fingerprint.get(k))
        if differing:
            raise InvalidConfigError(
                f"run folder {run_dir} was created with a different model or configuration "
                f"(differing keys: {', '.join(differing)}); use another run_dir, or fresh=True "
                "(CLI: --fresh) to move the old run aside and start over"
            )
        _log(progress, f"resuming the run in {run_dir}")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise InvalidConfigError(f"{run_dir} is not empty and holds no run.json; refusing to write into it "
                                 "(use another run_dir, or fresh=True to move it aside)")
    info = read_json(run_json) if run_json.exists() else {"format": RUN_FORMAT, "fingerprint": fingerprint,
                                                          "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    info["targets"] = targets  # targets may change between calls (e.g. more iterations)
    write_json(run_json, info)


@dataclass
class _Run:
    """The fixed inputs of one run, passed to each phase."""

    run_dir: Path
    unpruned: nn.Module
    example_inputs: Any
    evaluator: Any
    finetune: Callable[[nn.Module, int], nn.Module]
    prune: PruneOptions
    latency: LatencyOptions
    executor: Executor | None
    progress: bool
    sensitivity_evaluator: Any = None  # ranks (group, rate) pairs; None -> ``evaluator``
    sensitivity_cache: Path | None = None  # shared with other runs (content-keyed)
    base_params: int = 0
    base_flops: int = 0
    empty_reason: str | None = None  # why the last selection came back empty, when it says

    def load(self, iteration: int) -> tuple[nn.Module, str]:
        """Candidate ``iteration`` replayed from disk on a copy of the unpruned model, and its plan JSON."""
        d = iter_dir(self.run_dir, iteration)
        plan_json = (d / "plan.json").read_text(encoding="utf-8")
        weights = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
        return replay(copy.deepcopy(self.unpruned), plan_json, weights).eval(), plan_json

    def measure(self, model: nn.Module) -> tuple[int, int]:
        from edgeprune.complexity import count_flops, count_params

        return count_params(model), count_flops(model.eval(), self.example_inputs)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        _seed_all(self.prune.seed)  # evaluators that sample see the same draw in every run
        return _evaluate(self.evaluator, model.eval())

    def record(self, iteration: int, model: nn.Module, metrics: dict, before: dict, plan_sha: str,
               selected: dict, seconds: dict) -> CandidateRecord:
        params, flops = self.measure(model)
        primary = self.evaluator.primary
        rec = CandidateRecord(
            iteration=iteration, params=params, flops=flops,
            param_sparsity=1.0 - params / self.base_params if self.base_params else 0.0,
            flops_sparsity=1.0 - flops / self.base_flops if self.base_flops else 0.0,
            metrics=metrics, primary=primary, metric=metrics[primary], metric_before_finetune=before[primary],
            metrics_before_finetune=before, plan_sha256=plan_sha, selected=selected, seconds=seconds,
            # predicted on each target; the sweep measures them side by side
            predicted_ms={lm.name: lm.predict_model(model) for lm in self.latency.models} or None,
        )
        write_json(iter_dir(self.run_dir, iteration) / "metrics.json", rec.to_dict())
        return rec


def _baseline(run: _Run) -> CandidateRecord:
    """Candidate 0: the unpruned model, evaluated and saved with an empty plan."""
    from edgeprune.pruning import PruningPlan

    d = iter_dir(run.run_dir, 0)
    if is_finished(run.run_dir, 0):
        return read_record(run.run_dir, 0)
    empty = PruningPlan([])
    atomic_write_text(d / "plan.json", empty.to_json())
    save_weights(run.unpruned, d / "weights.pt")
    model, _ = run.load(0)
    run.base_params, run.base_flops = run.measure(model)
    t0 = time.perf_counter()
    metrics = run.evaluate(model)
    return run.record(0, model, metrics, metrics, empty.sha256(), {}, {"evaluate": time.perf_counter() - t0})


def _iteration(run: _Run, i: int) -> CandidateRecord | None:
    """One pruning iteration from candidate ``i - 1``; None when nothing is left to select."""
    from edgeprune.pruning import PruningPlan, apply, plan, trace

    d = iter_dir(run.run_dir, i)
    current, prev_plan_json = run.load(i - 1)
    seconds: dict[str, float] = {}

    sel_path = d / "selection.json"
    if sel_path.exists():
        sel = read_json(sel_path)
    else:
        _log(run.progress, f"iteration {i}: sensitivity of candidate {i - 1}")
        t0 = time.perf_counter()
        table = sensitivity(current, run.example_inputs, run.sensitivity_evaluator or run.evaluator,
                            rates=run.prune.rates, criterion=run.prune.criterion,
                            round_to=run.prune.round_to, executor=run.executor,
                            cache_dir=run.sensitivity_cache or d / "sensitivity", progress=run.progress)
        lat = latency_of_rows(run.latency.models, current, run.example_inputs, table)
        table.save(d)  # the iteration's table at a findable place (the cache folder holds a copy)
        t1 = time.perf_counter()
        chosen = select(table, run.prune.selection)
        sel = {"rates": chosen, "explain": explain(table, run.prune.selection, chosen),
               "seconds": {"sensitivity": t1 - t0, "sensitivity_evals": sum(r.seconds for r in table.rows),
                           "selection": time.perf_counter() - t1}}
        if lat is not None:
            sel["predicted_ms_before"] = lat["predicted_ms"]
            if run.latency.snap and chosen:
                snapped, moved = snap_rates(run.latency.models, lat["graph"], lat["channels"], chosen,
                                            run.prune.round_to)
                sel.update(rates_selected=chosen, snapped=moved, plan_round_to=1,
                           rates={g: r for g, r in snapped.items() if r > 0})
                if not sel["rates"]:
                    sel["stop"] = "no selected group buys predicted latency on the targets (all snapped back)"
        write_json(sel_path, sel)
    seconds.update(sel["seconds"])
    chosen = sel["rates"]
    if not chosen:
        run.empty_reason = sel.get("stop")
        return None
    _log(run.progress, f"iteration {i}: pruning {len(chosen)} groups: "
         + ", ".join(f"{g}@{r:g}" for g, r in chosen.items()))

    t0 = time.perf_counter()
    # a model may name groups it must keep (e.g. Ultralytics' DFL box outputs): prune_exclude
    graph = trace(current, run.example_inputs, exclude=getattr(current, "prune_exclude", ()))
    step = plan(graph, rates=chosen, criterion=run.prune.criterion,
                round_to=int(sel.get("plan_round_to", run.prune.round_to)))
    cumulative = PruningPlan.from_json(prev_plan_json).then(step)
    pruned = apply(current, step, run.example_inputs, graph=graph)  # verified: zeroed-channel check
    seconds["prune"] = time.perf_counter() - t0
    pruned_path = d / "pruned.json"
    if pruned_path.exists():
        before = read_json(pruned_path)["metrics_before_finetune"]
        seconds["evaluate_before"] = read_json(pruned_path)["seconds"]
    else:
        t0 = time.perf_counter()
        before = run.evaluate(pruned)
        seconds["evaluate_before"] = time.perf_counter() - t0
        write_json(pruned_path, {"metrics_before_finetune": before, "seconds": seconds["evaluate_before"],
                                 "step_plan_sha256": step.sha256()})

    ft_path = d / "finetune.json"
    if (d / "weights.pt").exists() and ft_path.exists():
        seconds["finetune"] = read_json(ft_path)["seconds"]
    else:
        steps = run.prune.finetune_steps
        _log(run.progress, f"iteration {i}: fine-tuning {steps} steps")
        t0 = time.perf_counter()
        _seed_all(run.prune.seed + 1000 * i)  # the same draw whether or not the run was interrupted
        pruned.train()
        tuned = run.finetune(pruned, steps) if steps else pruned
        seconds["finetune"] = time.perf_counter() - t0
        atomic_write_text(d / "plan.json", cumulative.to_json())
        save_weights(tuned, d / "weights.pt")
        write_json(ft_path, {"seconds": seconds["finetune"], "steps": steps})

    # Evaluate the candidate as it replays from disk: what users load is what was measured.
    model, _ = run.load(i)
    t0 = time.perf_counter()
    metrics = run.evaluate(model)
    seconds["evaluate"] = time.perf_counter() - t0
    return run.record(i, model, metrics, before, cumulative.sha256(), chosen, seconds)


@locks_run_dir("run_dir")
def iterative_prune(
    model: nn.Module,
    example_inputs: Any,
    evaluator: Any,
    finetune: Callable[[nn.Module, int], nn.Module],
    *,
    run_dir: str | Path,
    stop: StopCriteria | None = None,
    prune: PruneOptions | None = None,
    latency: LatencyOptions | None = None,
    executor: Executor | None = None,
    sensitivity_evaluator: Any = None,
    sensitivity_cache: str | Path | None = None,
    progress: bool = True,
    fresh: bool = False,
    **options: Any,
) -> IterativeResult:
    """Prune iteratively until a target is met; every iteration is a candidate saved in ``run_dir``.

    ``stop`` (``StopCriteria``, or the keywords ``iterations``, ``target_param_sparsity``,
    ``target_flops_sparsity``, ``metric_floor``): stops when the iterations are done, a sparsity
    target is reached, the metric falls below the floor (the final candidate is then the last one at
    or above it), or nothing is left to select. Rerunning the same call resumes; a different model or
    config is refused unless ``fresh=True`` (which moves the old run folder aside).
    ``prune`` (``PruneOptions``, or the keywords ``finetune_steps`` (default 200 per iteration),
    ``selection``, ``rates``, ``criterion``, ``round_to``, ``seed``): how each iteration prunes.
    Sensitivity runs on ``executor`` (default: a local process pool).

    ``latency`` (``LatencyOptions``, or the keywords ``latency_models``, ``until_knee``, ``knee_tau``,
    ``snap``): latency models (``edgeprune.latency.LatencyModel``, one per target) add the predicted
    latency saved to each sensitivity row (for ``SelectionConfig(n_latency=...)``), the predicted
    latency per target to each candidate, and (``snap``) keep pruned channel counts on the targets'
    measured steps. ``until_knee`` stops once every target's predicted latency improved by at most
    ``knee_tau``.

    ``sensitivity_evaluator`` (default: ``evaluator``) scores the many single-layer prunes of the
    sensitivity analysis, e.g. on a subset of the images, while ``evaluator`` scores the candidates
    (e.g. the full set with an interval). ``sensitivity_cache`` (default: ``iter_XX/sensitivity`` of
    each iteration) is a folder shared with other runs: results are keyed by model, evaluator and
    rates, so runs that start from the same model (``per_target_prune``) compute its sensitivity once.
    """
    stop = gather(StopCriteria, stop, options, KEYWORDS["stop"], "iterative_prune")
    prune = gather(PruneOptions, prune, options, KEYWORDS["prune"], "iterative_prune")
    latency = gather(LatencyOptions, latency, options, KEYWORDS["latency"], "iterative_prune")
    refuse_unknown(options, "iterative_prune", [k for names in KEYWORDS.values() for k in names])
    latency.check(prune.selection)
    if stop.is_empty() and not latency.until_knee:
        raise InvalidConfigError("give at least one target: iterations, target_param_sparsity, "
                                 "target_flops_sparsity, metric_floor or until_knee")
    stop.check()
    prune.check()
    # run.json keeps the targets in this form (a run may be extended with other targets)
    targets = {"iterations": stop.iterations, "param_sparsity": stop.param_sparsity,
               "flops_sparsity": stop.flops_sparsity, "metric_floor": stop.metric_floor,
               "until_knee": float(latency.knee_tau) if latency.until_knee else None}
    run_dir = Path(run_dir)
    unpruned = copy.deepcopy(model).eval()
    fp = _fingerprint(unpruned, example_inputs, evaluator, finetune, prune, latency)
    if sensitivity_evaluator is not None:
        fp["sensitivity_evaluator"] = describe_callable(sensitivity_evaluator)
    _open_run(run_dir, fp, targets, fresh, progress)
    run = _Run(run_dir, unpruned, example_inputs, evaluator, finetune, prune, latency, executor, progress,
               sensitivity_evaluator, Path(sensitivity_cache) if sensitivity_cache is not None else None)

    candidates = [_baseline(run)]
    base = candidates[0]
    run.base_params, run.base_flops = base.params, base.flops
    info = read_json(run_dir / "run.json")
    info["baseline"] = {"metrics": base.metrics, "params": base.params, "flops": base.flops}
    write_json(run_dir / "run.json", info)
    if stop.metric_floor is not None and base.metric < stop.metric_floor:
        raise InvalidConfigError(f"the unpruned model already scores {base.metric:.4g} "
                                 f"{evaluator.primary}, below metric_floor={stop.metric_floor}")
    _log(progress, f"candidate 0 (unpruned): {evaluator.primary}={base.metric:.4f}, "
         f"{base.params / 1e6:.3f}M params, {base.flops / 1e9:.3f} GFLOPs")

    i, reason = 1, None
    while reason is None:
        c = read_record(run_dir, i) if is_finished(run_dir, i) else _iteration(run, i)
        if c is None:
            reason = run.empty_reason or "no group left to prune (selection empty)"
            if latency.models and prune.selection.n_latency and not run.empty_reason:
                reason = "no group's pruning saves predicted latency on any target: the knee is reached"
            break
        candidates.append(c)
        write_json(run_dir / "candidates.json", [r.to_dict(summary=True) for r in candidates])
        _log(progress, f"candidate {i}: {evaluator.primary}={c.metric:.4f} (before fine-tune "
             f"{c.metric_before_finetune:.4f}), params -{c.param_sparsity:.1%}, "
             f"FLOPs -{c.flops_sparsity:.1%}")
        reason = stop.reason(c, latency.knee_reason(c, candidates[-2]))
        i += 1
    write_json(run_dir / "candidates.json", [r.to_dict(summary=True) for r in candidates])

    ok = [c for c in candidates if stop.metric_floor is None or c.metric >= stop.metric_floor]
    final = ok[-1].iteration
    _log(progress, f"stopped: {reason}; final candidate: {final}")
    return IterativeResult(run_dir, candidates, final, reason, run.load(final)[0])


def latency_of_rows(models: Sequence[Any], current: nn.Module, example_inputs: Any,
                    table: Any) -> dict | None:
    """Fill each sensitivity row's ``latency_saved`` (mean over targets of the predicted fraction saved)."""
    if not models:
        return None
    from edgeprune.latency import channels_of_model
    from edgeprune.pruning import trace

    graph = trace(current, example_inputs)
    channels = channels_of_model(current, models[0].layers)
    now = {lm.name: lm.predict(channels) for lm in models}
    for r in table.rows:
        saved = [(now[lm.name] - lm.predict_removal(channels, graph, {r.group: r.removed})) / now[lm.name]
                 for lm in models]
        r.latency_saved = float(sum(saved) / len(saved))
    return {"predicted_ms": now, "graph": graph, "channels": channels}
