"""Sensitivity analysis: every prunable group pruned alone at each rate, evaluated without fine-tuning.

Jobs run through an ``Executor`` (local processes by default). Every finished (group, rate) result is
written to the cache at once, so an interrupted pass resumes where it stopped, and a repeated pass
with the same weights, architecture, rates, criterion, rounding and evaluator settings evaluates
nothing.

Workers receive the model, example inputs and evaluator by pickle (written once to a payload file
that each worker loads once; an executor with ``ships_objects``, such as Ray, carries them itself).
So for ``workers > 1`` the evaluator must be picklable: no lambdas, open files or live sockets in it,
and its class importable by module path.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_bytes, read_json, write_json
from edgeprune.iterative.executors import Executor, SerialExecutor, default_executor
from edgeprune.iterative.hashing import describe_callable, input_signature, json_sha256, state_dict_sha256
from edgeprune.iterative.table import SensitivityRow, SensitivityTable

CACHE_FORMAT = 1
DEFAULT_RATES = (0.25, 0.5, 0.75)


@dataclass(frozen=True)
class _Task:
    group: str
    rate: float
    channels: int
    removed: int
    plan_json: str


@dataclass
class _Context:
    model: nn.Module
    example_inputs: Any
    evaluator: Any
    params: int
    flops: int


_WORKER_CONTEXTS: dict[str, _Context] = {}  # payload path -> context, one load per worker process


class _Job:
    """Evaluates one task. Pickles as its payload path only, never the model itself."""

    def __init__(self, payload_path: str | None, context: _Context | None = None, sha256: str = "") -> None:
        self.payload_path = payload_path
        self.sha256 = sha256
        self._context = context

    def __getstate__(self) -> dict:
        if self.payload_path is None:  # an executor that ships objects itself (Ray's object store)
            return {"payload_path": None, "context": self._context}
        return {"payload_path": self.payload_path, "sha256": self.sha256}

    def __setstate__(self, state: dict) -> None:
        self.payload_path = state["payload_path"]
        self.sha256 = state.get("sha256", "")
        self._context = state.get("context")

    def context(self) -> _Context:
        if self._context is None:
            ctx = _WORKER_CONTEXTS.get(self.payload_path)
            if ctx is None:
                try:
                    ctx = _read_payload(self.payload_path, self.sha256)
                except (ImportError, AttributeError) as exc:  # pickled by reference to a class not found
                    raise InvalidConfigError(
                        f"a sensitivity worker could not load the model/evaluator: {exc}. Their classes must "
                        "be importable by module path in a fresh process (not defined in an interactive "
                        "session or a script without `if __name__ == '__main__'`), or use workers=1"
                    ) from None
                _WORKER_CONTEXTS[self.payload_path] = ctx
            self._context = ctx
        return self._context

    def __call__(self, task: _Task) -> dict:
        from edgeprune.complexity import count_flops, count_params
        from edgeprune.pruning import PruningPlan, apply

        ctx = self.context()
        t0 = time.perf_counter()
        model = apply(copy.deepcopy(ctx.model), PruningPlan.from_json(task.plan_json))
        torch.manual_seed(0)  # evaluators that sample must see the same draw on every worker
        device = _task_device()
        metrics = _evaluate(ctx.evaluator, model.to(device) if device else model)
        model.cpu().eval()  # complexity is counted on the CPU, with the CPU example inputs
        params = count_params(model)
        flops = count_flops(model, ctx.example_inputs)
        return {
            "group": task.group, "rate": task.rate, "channels": task.channels, "removed": task.removed,
            "metric": metrics[ctx.evaluator.primary], "params_removed": ctx.params - params,
            "flops_removed": ctx.flops - flops, "metrics": metrics, "seconds": time.perf_counter() - t0,
        }


def _task_device() -> str | None:
    """"cuda" in a cluster task that was given a GPU (the evaluator follows the model's device)."""
    from edgeprune.iterative.ray_executor import DEVICE_ENV

    if os.environ.get(DEVICE_ENV) == "cuda" and torch.cuda.is_available():
        return "cuda"
    return None


def _evaluate(evaluator: Any, model: nn.Module) -> dict[str, float]:
    with torch.no_grad():
        metrics = evaluator(model)
    if not isinstance(metrics, dict) or evaluator.primary not in metrics:
        raise InvalidConfigError(
            f"evaluator {type(evaluator).__name__} returned {type(metrics).__name__} without its "
            f"primary metric {evaluator.primary!r}"
        )
    return {k: float(v) for k, v in metrics.items()}


def _check_evaluator(evaluator: Any) -> None:
    for attr in ("primary", "settings"):
        if not hasattr(evaluator, attr):
            raise InvalidConfigError(
                f"evaluator {type(evaluator).__name__} lacks '{attr}': it must follow the "
                "edgeprune.evaluation.Evaluator protocol (primary, __call__(model) -> dict, settings())"
            )


def _safe_name(group: str, rate: float) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", group)[:80]
    return f"{stem}-{json_sha256(group)[:8]}@{rate:g}.json"


def cache_key(model: nn.Module, example_inputs: Any, evaluator: Any, rates, criterion: str,
              round_to: int, groups: list[str]) -> dict:
    """The facts a sensitivity result depends on; ``json_sha256`` of it names the cache folder."""
    return {
        "format": CACHE_FORMAT,
        "model": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights_sha256": state_dict_sha256(model),  # names and shapes pin the architecture too
        "inputs": input_signature(example_inputs),
        "groups": groups,
        "rates": [float(r) for r in rates],
        "criterion": criterion,
        "round_to": int(round_to),
        "evaluator": describe_callable(evaluator),
    }


def _make_tasks(graph: Any, groups: list[Any], rates, criterion: str, round_to: int) -> list[_Task]:
    from edgeprune.pruning import plan as make_plan

    tasks = []
    for g in groups:
        for rate in rates:
            p = make_plan(graph, rates={g.id: float(rate)}, criterion=criterion, round_to=round_to)
            tasks.append(_Task(g.id, float(rate), int(g.channels), _removed(p, g.id), p.to_json()))
    return tasks


def _removed(plan_obj: Any, group_id: str) -> int:
    """Channels the plan removes from ``group_id``."""
    info = plan_obj.groups.get(group_id)
    return int(info["channels"] - info["keep"]) if info else 0


def sensitivity(
    model: nn.Module,
    example_inputs: Any,
    evaluator: Any,
    rates=DEFAULT_RATES,
    criterion: str = "l2",
    round_to: int = 1,
    groups: list[str] | None = None,
    executor: Executor | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> SensitivityTable:
    """Prune each prunable group alone at each rate (on a copy), evaluate, tabulate.

    ``groups`` restricts the analysis to those group ids. With ``cache_dir`` every result is cached
    under ``cache_dir/<key>/`` as soon as it is known; the table is also saved there (CSV, JSON, PNG).
    """
    from edgeprune.complexity import count_flops, count_params
    from edgeprune.pruning import trace

    _check_evaluator(evaluator)
    rates = tuple(float(r) for r in rates)
    if not rates or any(not 0.0 < r < 1.0 for r in rates):
        raise InvalidConfigError(f"rates must be fractions strictly between 0 and 1, got {list(rates)}")
    if not isinstance(round_to, int) or round_to < 1:
        raise InvalidConfigError(f"round_to must be a positive integer, got {round_to!r}")
    model = copy.deepcopy(model).eval()  # never touch the caller's model (mode included)
    graph = trace(model, example_inputs, exclude=getattr(model, "prune_exclude", ()))
    prunable = [g for g in graph.groups if g.prunable]
    if groups is not None:
        known = {g.id for g in prunable}
        unknown = [g for g in groups if g not in known]
        if unknown:
            raise InvalidConfigError(f"unknown or unprunable group ids: {unknown}")
        prunable = [g for g in prunable if g.id in set(groups)]
    key_facts = cache_key(model, example_inputs, evaluator, rates, criterion, round_to,
                          [g.id for g in prunable])
    key = json_sha256(key_facts)
    cache = Path(cache_dir) / key[:16] if cache_dir is not None else None
    if cache is not None:
        write_json(cache / "key.json", {"key": key, **key_facts})

    params = count_params(model)
    flops = count_flops(model, example_inputs)
    baseline = _cached(cache, "baseline.json")
    if baseline is None:
        torch.manual_seed(0)  # as the workers do before each evaluation
        baseline = _evaluate(evaluator, model)
        if cache is not None:
            write_json(cache / "baseline.json", baseline)

    tasks = _make_tasks(graph, prunable, rates, criterion, round_to)
    done: dict[tuple[str, float], dict] = {}
    pending = []
    for t in tasks:
        hit = _cached(cache, "rows", _safe_name(t.group, t.rate))
        if hit is not None:
            done[(t.group, t.rate)] = hit
        elif t.removed == 0:  # rounding removed nothing: the model is unchanged, nothing to evaluate
            done[(t.group, t.rate)] = {
                "group": t.group, "rate": t.rate, "channels": t.channels, "removed": 0,
                "metric": baseline[evaluator.primary], "params_removed": 0, "flops_removed": 0,
                "metrics": baseline, "seconds": 0.0,
            }
        else:
            pending.append(t)

    if pending:
        executor = executor or default_executor()
        _run(pending, model, example_inputs, evaluator, params, flops, executor, cache, done, progress)

    rows = [SensitivityRow.from_dict(done[(t.group, t.rate)]) for t in tasks]
    table = SensitivityTable(rows, evaluator.primary, baseline, params, flops, key)
    if cache is not None:
        table.save(cache)
    return table


def _cached(cache: Path | None, *parts: str) -> Any:
    if cache is None:
        return None
    path = cache.joinpath(*parts)
    return read_json(path) if path.exists() else None


def _run(pending: list[_Task], model: nn.Module, example_inputs: Any, evaluator: Any, params: int,
         flops: int, executor: Executor, cache: Path | None, done: dict, progress: bool) -> None:
    from tqdm import tqdm

    ctx = _Context(model, example_inputs, evaluator, params, flops)
    tmpdir = None
    if isinstance(executor, SerialExecutor):
        job = _Job(None, ctx)
    elif getattr(executor, "ships_objects", False):  # e.g. Ray: workers on other machines see no local file
        _check_picklable(ctx)
        job = _Job(None, ctx)
    else:
        # Payload goes next to the cache (a shared folder serves a cluster executor too), else to /tmp.
        tmpdir = Path(tempfile.mkdtemp(prefix=".payload-", dir=cache)) if cache else Path(tempfile.mkdtemp())
        job = _Job(str(tmpdir / "payload.pkl"), sha256=_write_payload(ctx, tmpdir / "payload.pkl"))
    bar = tqdm(total=len(pending), desc="sensitivity", unit="eval", disable=None if progress else True)
    try:
        for res in executor.map(job, pending):
            done[(res["group"], res["rate"])] = res
            if cache is not None:
                write_json(cache / "rows" / _safe_name(res["group"], res["rate"]), res)
            bar.update(1)
    finally:
        bar.close()
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def _read_payload(path: str, sha256: str) -> _Context:
    """The context this process's parent wrote. It is unpickled (it holds the user's evaluator) only
    after its SHA-256 matches the digest the job carried over the executor's own channel, so a file
    swapped in the folder is refused rather than run."""
    with open(path, "rb") as f:
        data = f.read()
    if not sha256 or hashlib.sha256(data).hexdigest() != sha256:
        raise InvalidConfigError(f"sensitivity payload {path} does not match the digest its job carries; "
                                 "refusing to load it (was the folder modified during the run?)")
    return pickle.loads(data)  # noqa: S301  (integrity-checked, written by the parent process)


def _write_payload(ctx: _Context, path: Path) -> str:
    _check_picklable(ctx)
    data = pickle.dumps(ctx)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _check_picklable(ctx: _Context) -> None:
    for what, obj in (("evaluator", ctx.evaluator), ("model", ctx.model)):
        try:
            pickle.dumps(obj)
        except Exception as exc:  # pickle raises many types (PicklingError, TypeError, AttributeError)
            raise InvalidConfigError(
                f"the {what} ({type(obj).__name__}) cannot be pickled for worker processes: {exc}. "
                f"Make it picklable (no lambdas, local classes, open files), or run with workers=1 "
                f"(executor=SerialExecutor())."
            ) from exc
