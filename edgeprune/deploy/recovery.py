"""Recovery fine-tune of a picked candidate: a longer fine-tune, early-stopped on the validation metric.

The pruning loop fine-tunes each candidate briefly (the budget is shared by every iteration); the
pick of a target deserves more. ``recover`` trains the candidate for up to ``steps`` optimizer steps
(one warm-up + cosine schedule over the whole budget), evaluates every ``eval_every`` steps, keeps
the best weights, and stops after ``patience`` evaluations without an improvement of more than
``min_delta``. The candidate as it was is evaluation 0, so recovery never returns a worse model.

Layout (in ``run_dir/recovery/iter_XX/``; everything written atomically)::

    ckpt/last.pt      trainer checkpoint (weights, optimizer, step, RNG): an interrupted run resumes
    best.pt           state_dict of the best evaluation so far
    recovery.json     key, every evaluation, best step, why it stopped; ``finished`` when done

Rerunning with the same inputs resumes (or returns the finished result); different inputs (another
candidate, fine-tune settings, evaluator or budget) are refused unless ``fresh=True``.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_bytes, read_json, sha256_file, write_json


@dataclass
class RecoveryConfig:
    """Budget and early stopping of the recovery fine-tune."""

    steps: int = 300
    eval_every: int = 50
    patience: int = 2  # evaluations without improvement before stopping
    min_delta: float = 0.0  # an improvement must exceed this (metric units)

    def validate(self) -> None:
        """Raise ``InvalidConfigError`` naming the first bad field."""
        for name in ("steps", "eval_every", "patience"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InvalidConfigError(f"recovery {name} must be a positive integer, got {v!r}")
        if self.min_delta < 0:
            raise InvalidConfigError(f"recovery min_delta must be >= 0, got {self.min_delta!r}")


def recovery_dir(run_dir: str | Path, iteration: int) -> Path:
    """Where the recovery of candidate ``iteration`` lives."""
    return Path(run_dir) / "recovery" / f"iter_{iteration:02d}"


def _describe(obj: Any) -> Any:
    settings = getattr(obj, "settings", None)
    return settings() if callable(settings) else f"{type(obj).__module__}.{type(obj).__qualname__}"


def _key(run_dir: Path, iteration: int, finetune: Any, evaluator: Any, config: RecoveryConfig) -> str:
    from edgeprune.iterative.candidates import iter_dir

    d = iter_dir(run_dir, iteration)
    facts = {"plan": sha256_file(d / "plan.json"), "weights": sha256_file(d / "weights.pt"),
             "finetune": _describe(finetune), "evaluator": _describe(evaluator), "config": asdict(config)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()


def _save(model, path: Path) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def _evaluate(evaluator: Any, model) -> tuple[dict[str, float], Any]:
    import torch

    with torch.no_grad():
        metrics = {k: float(v) for k, v in evaluator(model.eval()).items()}
    return metrics, getattr(evaluator, "last_matches", None)


def recover(
    run_dir: str | Path,
    iteration: int,
    model_factory: Callable[[], Any],
    finetune: Any,
    evaluator: Any,
    config: RecoveryConfig | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune candidate ``iteration`` of a run (resumable, early-stopped); returns recovery.json.

    ``finetune`` needs ``make_trainer(model, steps, **overrides)`` (``LabeledFinetune`` or
    ``DistillFinetune``); ``evaluator`` is an ``Evaluator`` (with ``bootstrap`` set, the result also
    holds the paired interval of after - before).
    """
    from edgeprune.iterative.candidates import load_candidate

    config = config or RecoveryConfig()
    config.validate()
    if not hasattr(finetune, "make_trainer"):
        raise InvalidConfigError("recovery needs a fine-tune with make_trainer() (LabeledFinetune or "
                                 f"DistillFinetune), got {type(finetune).__name__}")
    run_dir = Path(run_dir)
    out = recovery_dir(run_dir, iteration)
    model = load_candidate(run_dir, iteration, model_factory)  # raises a clear error when missing
    key = _key(run_dir, iteration, finetune, evaluator, config)
    state_path = out / "recovery.json"
    state = read_json(state_path) if state_path.exists() else None
    if state is not None and (fresh or state.get("key") != key):
        if not fresh:
            raise InvalidConfigError(
                f"{out} holds a recovery of other inputs (candidate, fine-tune, evaluator or budget); "
                "use fresh=True (CLI: --fresh) to start it over")
        shutil.rmtree(out)
        state = None
    if state is not None and state.get("finished"):
        return state
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        if progress:
            print(f"[edgeprune recover] candidate {iteration}: {msg}", flush=True)

    primary = evaluator.primary
    matches: dict[int, Any] = {}
    if state is None:
        before, matches[0] = _evaluate(evaluator, model)
        state = {"key": key, "candidate": iteration, "primary": primary, "config": asdict(config),
                 "finetune": _describe(finetune), "evals": [{"step": 0, "metrics": before}],
                 "best_step": 0, "finished": False, "stop_reason": None, "seconds": 0.0}
        _save(model, out / "best.pt")
        write_json(state_path, state)
        log(f"before: {primary} {before[primary]:.4f}")
    trainer = finetune.make_trainer(model.train(), config.steps, total_steps=config.steps,
                                    ckpt_dir=str(out / "ckpt"), resume=True, ckpt_every=0)
    t0 = time.perf_counter()

    def best_metric() -> float:
        return max(e["metrics"][primary] for e in state["evals"])

    while not state["finished"]:
        last = state["evals"][-1]["step"]
        target = trainer.step if trainer.step > last else min(last + config.eval_every, config.steps)
        trainer.train(target)  # saves ckpt/last.pt, then re-estimates BatchNorm statistics
        metrics, matches[target] = _evaluate(evaluator, model)
        improved = metrics[primary] > best_metric() + config.min_delta
        if improved:
            _save(model, out / "best.pt")  # before recovery.json names it: a crash re-evaluates
            state["best_step"] = target
        state["evals"].append({"step": target, "metrics": metrics})
        since = sum(1 for e in state["evals"] if e["step"] > state["best_step"])
        log(f"step {target}/{config.steps}: {primary} {metrics[primary]:.4f}"
            + (" (best)" if improved else f" ({since} without improvement)"))
        if since >= config.patience:
            state["finished"], state["stop_reason"] = True, (
                f"early stop: {since} evaluations without improvement over step {state['best_step']}")
        elif target >= config.steps:
            state["finished"], state["stop_reason"] = True, f"budget of {config.steps} steps used"
        if state["finished"]:
            _finish(state, matches, evaluator, model_factory, run_dir, iteration, out)
        state["seconds"] = float(state.get("seconds", 0.0)) + time.perf_counter() - t0
        t0 = time.perf_counter()
        write_json(state_path, state)
    log(state["stop_reason"])
    return state


def _finish(state: dict, matches: dict, evaluator: Any, model_factory, run_dir: Path, iteration: int,
            out: Path) -> None:
    """Fill before/after (and their paired difference when the evaluator keeps per-image matches)."""
    from edgeprune.iterative.candidates import load_candidate

    evals = {e["step"]: e["metrics"] for e in state["evals"]}
    best = state["best_step"]
    state["before"], state["after"] = evals[0], evals[best]
    primary = state["primary"]
    if best == 0 or getattr(evaluator, "bootstrap", 0) in (0, None):
        return
    from edgeprune.evaluation.bootstrap import paired_difference

    if matches.get(0) is None:  # resumed after the first evaluation: score the candidate again
        _, matches[0] = _evaluate(evaluator, load_candidate(run_dir, iteration, model_factory))
    if matches.get(best) is None:
        _, matches[best] = _evaluate(evaluator, load_recovered(run_dir, iteration, model_factory))
    if matches[0] is None or matches[best] is None:
        return
    diff = paired_difference(matches[best], matches[0], "mAP50-95", evaluator.bootstrap, evaluator.confidence)
    state["gain"] = {"metric": primary, **diff.to_dict(), "distinguishable": not diff.contains(0.0),
                     "how": "paired bootstrap over validation images (after - before)"}


def load_recovered(run_dir: str | Path, iteration: int, model_factory: Callable[[], Any]):
    """Candidate ``iteration`` with its best recovery weights (eval mode)."""
    import torch

    from edgeprune.iterative.candidates import load_candidate

    path = recovery_dir(run_dir, iteration) / "best.pt"
    if not path.exists():
        raise InvalidConfigError(f"candidate {iteration} has no recovery in {path.parent}; run recover() "
                                 f"(CLI: edgeprune finetune {run_dir} --candidate {iteration}) first")
    model = load_candidate(run_dir, iteration, model_factory)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return copy.deepcopy(model).eval()


def _run_of(run_dir: Path, cand_id: str) -> tuple[Path, str]:
    """(run folder, id inside it) of a sweep candidate: ``<target>.iter_XX`` of a per-target run."""
    from edgeprune.iterative.per_target import read_marker

    runs = read_marker(run_dir)
    prefix, _, local = cand_id.rpartition(".")
    if runs is None or not prefix:
        return run_dir, cand_id
    if prefix not in runs:
        raise InvalidConfigError(f"candidate '{cand_id}' names no run of the per-target folder {run_dir} "
                                 f"(it has {sorted(runs)})")
    return runs[prefix], local


def recovery_hook(
    run_dir: str | Path,
    model_factory: Callable[[], Any],
    finetune: Any,
    evaluator: Any,
    out_dir: str | Path,
    img_size: int | tuple[int, int],
    config: RecoveryConfig | None = None,
    progress: bool = True,
) -> Callable[[Any], Any]:
    """``hook(candidate) -> (recovered candidate, info) | None`` for ``sweep(..., recovery=hook)``.

    Each pick is recovered once (targets that agree share it) and exported beside the sweep's
    candidates as ``<id>-recovered``; the unpruned candidate (``iter_00``) is left as it is.
    """
    from edgeprune.deploy.candidate_files import SweepCandidate, export_candidates

    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    root = Path(run_dir)
    done: dict[str, Any] = {}

    def hook(cand: SweepCandidate):
        if cand.id in done:
            return done[cand.id]
        cand_run, local = _run_of(root, cand.id)  # a per-target run: <target>.iter_XX in run <target>/
        if not local.startswith("iter_") or not local[5:].isdigit():
            raise InvalidConfigError(f"recovery needs candidates of a run folder (iter_XX), got '{cand.id}'")
        it = int(local[5:])
        if it == 0:
            done[cand.id] = None
            return None
        state = recover(cand_run, it, model_factory, finetune, evaluator, config, progress=progress)
        info = {k: state.get(k) for k in ("before", "after", "best_step", "stop_reason", "gain", "config",
                                          "seconds")}
        info["evals"] = [{"step": e["step"], "metric": e["metrics"][state["primary"]]}
                         for e in state["evals"]]
        if state["best_step"] == 0:  # nothing better than the pick as pruned: bundle it unchanged
            done[cand.id] = (cand, info)
            return done[cand.id]
        best = recovery_dir(cand_run, it) / "best.pt"
        rc = SweepCandidate(id=f"{cand.id}-recovered", sparsity=cand.sparsity,
                       model=load_recovered(cand_run, it, model_factory), params=cand.params,
                       flops=cand.flops,
                       metrics=dict(state["after"]), primary=cand.primary, plan_sha256=cand.plan_sha256,
                       cache_key=f"recovered-{sha256_file(best)[:32]}")
        export_candidates([rc], Path(out_dir), size)
        done[cand.id] = (rc, info)
        return done[cand.id]

    return hook
