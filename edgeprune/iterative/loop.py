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
from edgeprune.iterative.candidates import format_table, is_finished, iter_dir, replay, save_weights
from edgeprune.iterative.executors import Executor
from edgeprune.iterative.hashing import describe_callable, input_signature, state_dict_sha256
from edgeprune.iterative.selection import SelectionConfig, explain, select
from edgeprune.iterative.sensitivity import DEFAULT_RATES, _evaluate, sensitivity
from edgeprune.latency.snap import snap_rates
from edgeprune.runlock import locks_run_dir

RUN_FORMAT = 1


@dataclass
class IterativeResult:
    """What ``iterative_prune`` produced; every candidate is also on disk in ``run_dir``."""

    run_dir: Path
    candidates: list[dict[str, Any]]  # metrics.json of each finished candidate
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


def _fingerprint(model, example_inputs, evaluator, finetune, finetune_steps, selection, rates,
                 criterion, round_to, seed, latency_models=None, snap=True) -> dict[str, Any]:
    """Everything the candidates depend on. Targets are left out: a run may be extended."""
    fp = {
        "format": RUN_FORMAT,
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights_sha256": state_dict_sha256(model),
        "inputs": input_signature(example_inputs),
        "evaluator": describe_callable(evaluator),
        "finetune": describe_callable(finetune),
        "finetune_steps": int(finetune_steps),
        "selection": selection.to_dict(),
        "rates": [float(r) for r in rates],
        "criterion": criterion,
        "round_to": int(round_to),
        "seed": int(seed),
    }
    if latency_models:  # selection and snapping follow them (their settings, not their noisy numbers)
        fp["latency"] = {"targets": [{"name": lm.name, **lm.key} for lm in latency_models],
                         "snap": bool(snap)}
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


def _stop_reason(c: dict, targets: dict, prev: dict | None = None) -> str | None:
    """Why the loop stops after candidate ``c``, or None to continue."""
    if targets["metric_floor"] is not None and c["metric"] < targets["metric_floor"]:
        return f"metric {c['metric']:.4g} fell below the floor {targets['metric_floor']}"
    tau = targets.get("until_knee")
    if tau is not None and prev is not None and c.get("predicted_ms") and prev.get("predicted_ms"):
        gains = {t: (prev["predicted_ms"][t] - ms) / prev["predicted_ms"][t]
                 for t, ms in c["predicted_ms"].items() if prev["predicted_ms"].get(t)}
        if gains and all(g <= tau for g in gains.values()):
            return ("predicted latency stopped improving on every target (last step: "
                    + ", ".join(f"{t} {-g:+.1%}" for t, g in gains.items()) + f"; knee tolerance {tau:g})")
    if targets["iterations"] is not None and c["iteration"] >= targets["iterations"]:
        return f"reached {targets['iterations']} iterations"
    if targets["param_sparsity"] is not None and c["param_sparsity"] >= targets["param_sparsity"]:
        return f"parameter sparsity {c['param_sparsity']:.1%} reached {targets['param_sparsity']:.1%}"
    if targets["flops_sparsity"] is not None and c["flops_sparsity"] >= targets["flops_sparsity"]:
        return f"FLOPs sparsity {c['flops_sparsity']:.1%} reached {targets['flops_sparsity']:.1%}"
    return None


def _check_targets(targets: dict, finetune_steps: Any) -> None:
    if all(v is None for v in targets.values()):
        raise InvalidConfigError("give at least one target: iterations, target_param_sparsity, "
                                 "target_flops_sparsity, metric_floor or until_knee")
    it = targets["iterations"]
    if it is not None and (not isinstance(it, int) or isinstance(it, bool) or it < 1):
        raise InvalidConfigError(f"iterations must be a positive integer, got {it!r}")
    for name in ("param_sparsity", "flops_sparsity"):
        v = targets[name]
        if v is not None and not (isinstance(v, (int, float)) and 0.0 < v < 1.0):
            raise InvalidConfigError(f"target_{name} must be a fraction between 0 and 1, got {v!r}")
    if targets["metric_floor"] is not None and not isinstance(targets["metric_floor"], (int, float)):
        raise InvalidConfigError(f"metric_floor must be a number, got {targets['metric_floor']!r}")
    if not isinstance(finetune_steps, int) or isinstance(finetune_steps, bool) or finetune_steps < 0:
        raise InvalidConfigError(f"finetune_steps must be an integer >= 0, got {finetune_steps!r}")


@dataclass
class _Run:
    """The fixed inputs of one run, passed to each phase."""

    run_dir: Path
    unpruned: nn.Module
    example_inputs: Any
    evaluator: Any
    finetune: Callable[[nn.Module, int], nn.Module]
    finetune_steps: int
    selection: SelectionConfig
    rates: tuple
    criterion: str
    round_to: int
    executor: Executor | None
    progress: bool
    seed: int
    base_params: int = 0
    base_flops: int = 0
    latency_models: list = field(default_factory=list)
    snap: bool = True
    sensitivity_evaluator: Any = None  # ranks (group, rate) pairs; None -> ``evaluator``

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
        _seed_all(self.seed)  # evaluators that sample see the same draw in every run
        return _evaluate(self.evaluator, model.eval())

    def record(self, iteration: int, model: nn.Module, metrics: dict, before: dict, plan_sha: str,
               selected: dict, seconds: dict) -> dict:
        params, flops = self.measure(model)
        primary = self.evaluator.primary
        out = {
            "iteration": iteration, "primary": primary, "metric": metrics[primary],
            "metric_before_finetune": before[primary], "params": params, "flops": flops,
            "param_sparsity": 1.0 - params / self.base_params if self.base_params else 0.0,
            "flops_sparsity": 1.0 - flops / self.base_flops if self.base_flops else 0.0,
            "metrics": metrics, "metrics_before_finetune": before, "selected": selected,
            "seconds": seconds, "plan_sha256": plan_sha,
        }
        if self.latency_models:  # predicted on each target; the sweep measures them side by side
            out["predicted_ms"] = {lm.name: lm.predict_model(model) for lm in self.latency_models}
        write_json(iter_dir(self.run_dir, iteration) / "metrics.json", out)
        return out


def _baseline(run: _Run) -> dict:
    """Candidate 0: the unpruned model, evaluated and saved with an empty plan."""
    from edgeprune.pruning import PruningPlan

    d = iter_dir(run.run_dir, 0)
    if is_finished(run.run_dir, 0):
        return read_json(d / "metrics.json")
    empty = PruningPlan([])
    atomic_write_text(d / "plan.json", empty.to_json())
    save_weights(run.unpruned, d / "weights.pt")
    model, _ = run.load(0)
    run.base_params, run.base_flops = run.measure(model)
    t0 = time.perf_counter()
    metrics = run.evaluate(model)
    return run.record(0, model, metrics, metrics, empty.sha256(), {}, {"evaluate": time.perf_counter() - t0})


def _iteration(run: _Run, i: int) -> dict | None:
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
                            rates=run.rates,
                            criterion=run.criterion, round_to=run.round_to, executor=run.executor,
                            cache_dir=d / "sensitivity", progress=run.progress)
        lat = latency_of_rows(run.latency_models, current, run.example_inputs, table)
        table.save(d)  # the iteration's table at a findable place (the cache folder holds a copy)
        t1 = time.perf_counter()
        chosen = select(table, run.selection)
        sel = {"rates": chosen, "explain": explain(table, run.selection, chosen),
               "seconds": {"sensitivity": t1 - t0, "sensitivity_evals": sum(r.seconds for r in table.rows),
                           "selection": time.perf_counter() - t1}}
        if lat is not None:
            sel["predicted_ms_before"] = lat["predicted_ms"]
            if run.snap and chosen:
                snapped, moved = snap_rates(run.latency_models, lat["graph"], lat["channels"], chosen,
                                            run.round_to)
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
    step = plan(graph, rates=chosen, criterion=run.criterion,
                round_to=int(sel.get("plan_round_to", run.round_to)))
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
        _log(run.progress, f"iteration {i}: fine-tuning {run.finetune_steps} steps")
        t0 = time.perf_counter()
        _seed_all(run.seed + 1000 * i)  # the same draw whether or not the run was interrupted
        pruned.train()
        tuned = run.finetune(pruned, run.finetune_steps) if run.finetune_steps else pruned
        seconds["finetune"] = time.perf_counter() - t0
        atomic_write_text(d / "plan.json", cumulative.to_json())
        save_weights(tuned, d / "weights.pt")
        write_json(ft_path, {"seconds": seconds["finetune"], "steps": run.finetune_steps})

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
    iterations: int | None = None,
    target_param_sparsity: float | None = None,
    target_flops_sparsity: float | None = None,
    metric_floor: float | None = None,
    finetune_steps: int = 200,
    selection: SelectionConfig | None = None,
    rates=DEFAULT_RATES,
    criterion: str = "l2",
    round_to: int = 8,
    executor: Executor | None = None,
    progress: bool = True,
    seed: int = 0,
    fresh: bool = False,
    latency_models: Sequence[Any] | None = None,
    until_knee: bool = False,
    knee_tau: float = 0.03,
    snap: bool = True,
    sensitivity_evaluator: Any = None,
) -> IterativeResult:
    """Prune iteratively until a target is met; every iteration is a candidate saved in ``run_dir``.

    Stops when ``iterations`` are done, a sparsity target is reached, the metric falls below
    ``metric_floor`` (the final candidate is then the last one at or above it), or nothing is left
    to select. Rerunning the same call resumes; a different model or config is refused unless
    ``fresh=True`` (which moves the old run folder aside). Each iteration fine-tunes ``finetune_steps``
    steps (default 200); sensitivity runs on ``executor`` (default: a local process pool).

    ``latency_models`` (``edgeprune.latency.LatencyModel``, one per target) add the predicted latency
    saved to each sensitivity row (for ``SelectionConfig(n_latency=...)``), the predicted latency per
    target to each candidate, and (``snap``) keep pruned channel counts on the targets' measured steps.
    ``until_knee`` stops once every target's predicted latency improved by at most ``knee_tau``.

    ``sensitivity_evaluator`` (default: ``evaluator``) scores the many single-layer prunes of the
    sensitivity analysis, e.g. on a subset of the images, while ``evaluator`` scores the candidates
    (e.g. the full set with an interval).
    """
    targets = {"iterations": iterations, "param_sparsity": target_param_sparsity,
               "flops_sparsity": target_flops_sparsity, "metric_floor": metric_floor,
               "until_knee": float(knee_tau) if until_knee else None}
    latency_models = list(latency_models or [])
    if until_knee and not latency_models:
        raise InvalidConfigError("until_knee needs latency_models (edgeprune.latency.build_latency_model "
                                 "per target)")
    if len({lm.name for lm in latency_models}) != len(latency_models):
        raise InvalidConfigError("latency models need distinct names (one per target)")
    if selection is not None and selection.n_latency and not latency_models:
        raise InvalidConfigError("selection.n_latency needs latency_models")
    _check_targets(targets, finetune_steps)
    selection = selection or SelectionConfig()
    run_dir = Path(run_dir)
    unpruned = copy.deepcopy(model).eval()
    fp = _fingerprint(unpruned, example_inputs, evaluator, finetune, finetune_steps, selection, rates,
                      criterion, round_to, seed, latency_models, snap)
    if sensitivity_evaluator is not None:
        fp["sensitivity_evaluator"] = describe_callable(sensitivity_evaluator)
    _open_run(run_dir, fp, targets, fresh, progress)
    run = _Run(run_dir, unpruned, example_inputs, evaluator, finetune, finetune_steps, selection,
               tuple(float(r) for r in rates), criterion, round_to, executor, progress, seed,
               latency_models=latency_models, snap=snap, sensitivity_evaluator=sensitivity_evaluator)

    candidates = [_baseline(run)]
    run.base_params, run.base_flops = candidates[0]["params"], candidates[0]["flops"]
    info = read_json(run_dir / "run.json")
    info["baseline"] = {k: candidates[0][k] for k in ("metrics", "params", "flops")}
    write_json(run_dir / "run.json", info)
    if metric_floor is not None and candidates[0]["metric"] < metric_floor:
        raise InvalidConfigError(f"the unpruned model already scores {candidates[0]['metric']:.4g} "
                                 f"{evaluator.primary}, below metric_floor={metric_floor}")
    _log(progress, f"candidate 0 (unpruned): {evaluator.primary}={candidates[0]['metric']:.4f}, "
         f"{candidates[0]['params'] / 1e6:.3f}M params, {candidates[0]['flops'] / 1e9:.3f} GFLOPs")

    i, reason = 1, None
    while reason is None:
        done = is_finished(run_dir, i)
        c = read_json(iter_dir(run_dir, i) / "metrics.json") if done else _iteration(run, i)
        if c is None:
            reason = getattr(run, "empty_reason", None) or "no group left to prune (selection empty)"
            if latency_models and selection.n_latency and not getattr(run, "empty_reason", None):
                reason = "no group's pruning saves predicted latency on any target: the knee is reached"
            break
        candidates.append(c)
        write_json(run_dir / "candidates.json", _summary(candidates))
        _log(progress, f"candidate {i}: {evaluator.primary}={c['metric']:.4f} (before fine-tune "
             f"{c['metric_before_finetune']:.4f}), params -{c['param_sparsity']:.1%}, "
             f"FLOPs -{c['flops_sparsity']:.1%}")
        reason = _stop_reason(c, targets, candidates[-2])
        i += 1
    write_json(run_dir / "candidates.json", _summary(candidates))

    ok = [c for c in candidates if metric_floor is None or c["metric"] >= metric_floor]
    final = ok[-1]["iteration"]
    _log(progress, f"stopped: {reason}; final candidate: {final}")
    return IterativeResult(run_dir, candidates, final, reason, run.load(final)[0])


def _summary(candidates: list[dict]) -> list[dict]:
    keys = ("iteration", "params", "flops", "param_sparsity", "flops_sparsity", "metric",
            "metric_before_finetune", "metrics", "plan_sha256", "predicted_ms")
    return [{k: c[k] for k in keys if k in c} for c in candidates]


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
