"""The run folder: one ``iter_XX`` folder per candidate, plus ``run.json`` and ``candidates.json``.

```
run_dir/run.json               config fingerprint, targets, baseline
run_dir/candidates.json        summary of every finished candidate
run_dir/iter_00/               the unpruned model (plan.json is an empty plan)
run_dir/iter_XX/sensitivity/   per-(group, rate) cache of the sensitivity of candidate XX-1
run_dir/iter_XX/sensitivity.{csv,json,png}   its table and heat map
run_dir/iter_XX/selection.json chosen {group: rate} and their scores
run_dir/iter_XX/pruned.json    metrics right after pruning, before fine-tuning
run_dir/iter_XX/plan.json      cumulative plan from the unpruned model
run_dir/iter_XX/weights.pt     state_dict after fine-tuning (finetune.json: its time)
run_dir/iter_XX/metrics.json   written last: the candidate is finished (a ``CandidateRecord``)
```
``CandidateRecord`` is the one schema of ``metrics.json`` and of the rows of ``candidates.json``:
the loop writes it, ``list_candidates`` and the sweep read it.
"""

from __future__ import annotations

import io
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_bytes, read_json

_ITER_RE = re.compile(r"^iter_(\d+)$")
_REQUIRED = ("iteration", "params", "flops", "param_sparsity", "flops_sparsity", "metrics")
# what candidates.json keeps of each record: the facts a sweep or a table needs, not the timings
_SUMMARY = ("iteration", "primary", "metric", "metric_before_finetune", "params", "flops", "param_sparsity",
            "flops_sparsity", "metrics", "plan_sha256", "predicted_ms")


@dataclass
class CandidateRecord:
    """One finished candidate: its size, sparsities and metrics as saved in ``iter_XX/metrics.json``."""

    iteration: int
    params: int
    flops: int
    param_sparsity: float  # fraction of the unpruned model's parameters removed
    flops_sparsity: float
    metrics: dict[str, float]
    primary: str | None = None  # the metric the loop's floor and the sweep's accuracy floor use
    metric: float | None = None  # metrics[primary]
    metric_before_finetune: float | None = None
    metrics_before_finetune: dict[str, float] = field(default_factory=dict)
    plan_sha256: str | None = None  # of the cumulative plan.json
    selected: dict[str, float] = field(default_factory=dict)  # {group: rate} pruned in this iteration
    seconds: dict[str, float] = field(default_factory=dict)
    predicted_ms: dict[str, float] | None = None  # per target, when the loop had latency models

    def to_dict(self, summary: bool = False) -> dict[str, Any]:
        """The JSON object (``summary``: the ``candidates.json`` row); absent predictions are left out."""
        d = asdict(self)
        if summary:
            d = {k: d[k] for k in _SUMMARY}
        return {k: v for k, v in d.items() if not (k == "predicted_ms" and v is None)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "candidate record") -> CandidateRecord:
        """Read a record; runs from before ``primary`` was saved get it from ``metric`` (or the first)."""
        missing = [k for k in _REQUIRED if k not in d]
        if missing:
            raise InvalidConfigError(
                f"{source} lacks {', '.join(missing)}: it was not written by iterative_prune; delete that "
                "iter_XX folder and rerun the same iterative_prune call (or edgeprune prune) to rebuild it")
        known = {f.name for f in fields(cls)}
        rec = cls(**{k: v for k, v in d.items() if k in known})
        rec.iteration, rec.params, rec.flops = int(rec.iteration), int(rec.params), int(rec.flops)
        rec.param_sparsity, rec.flops_sparsity = float(rec.param_sparsity), float(rec.flops_sparsity)
        if rec.primary is None:
            same = [k for k, v in rec.metrics.items() if rec.metric is not None and v == rec.metric]
            rec.primary = same[0] if same else next(iter(rec.metrics), None)
        if rec.metric is None and rec.primary in rec.metrics:
            rec.metric = float(rec.metrics[rec.primary])
        return rec


def iter_dir(run_dir: str | Path, iteration: int) -> Path:
    """Folder of candidate ``iteration``."""
    return Path(run_dir) / f"iter_{iteration:02d}"


def save_weights(model: nn.Module, path: Path) -> None:
    """``torch.save`` of the state_dict, written atomically."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def is_finished(run_dir: str | Path, iteration: int) -> bool:
    """Whether candidate ``iteration`` was saved completely (its metrics.json exists)."""
    return (iter_dir(run_dir, iteration) / "metrics.json").exists()


def read_record(run_dir: str | Path, iteration: int) -> CandidateRecord:
    """The record of finished candidate ``iteration`` (its ``metrics.json``)."""
    path = iter_dir(run_dir, iteration) / "metrics.json"
    return CandidateRecord.from_dict(read_json(path), source=str(path))


def list_candidates(run_dir: str | Path) -> list[CandidateRecord]:
    """The record of every finished candidate in ``run_dir``, by iteration."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InvalidConfigError(f"run folder {run_dir} does not exist")
    found = sorted(int(m.group(1)) for p in run_dir.iterdir()
                   if (m := _ITER_RE.match(p.name)) and (p / "metrics.json").exists())
    return [read_record(run_dir, i) for i in found]


def replay(unpruned: nn.Module, plan_json: str, weights: dict | None) -> nn.Module:
    """Apply a cumulative plan to an unpruned model (modified in place) and load ``weights``."""
    from edgeprune.pruning import PruningPlan, apply

    model = apply(unpruned, PruningPlan.from_json(plan_json))
    if weights is not None:
        model.load_state_dict(weights)
    return model


def load_candidate(run_dir: str | Path, iteration: int, model_factory: Callable[[], nn.Module]) -> nn.Module:
    """Candidate ``iteration``: its plan replayed on ``model_factory()`` (unpruned), then its weights."""
    d = iter_dir(run_dir, iteration)
    if not (d / "plan.json").exists() or not (d / "weights.pt").exists():
        raise InvalidConfigError(f"candidate {iteration} is not saved in {run_dir} (no {d.name}/plan.json "
                                 "or weights.pt); see list_candidates(run_dir)")
    weights = torch.load(d / "weights.pt", map_location="cpu", weights_only=True)
    model = replay(model_factory(), (d / "plan.json").read_text(encoding="utf-8"), weights)
    return model.eval()


def format_table(candidates: list[CandidateRecord], metrics: tuple[str, ...] | None = None) -> str:
    """Markdown table like the paper's: iteration, params, GFLOPs, sparsities, metrics."""
    if not candidates:
        return "(no candidates)"
    if metrics is None:
        names = list(candidates[0].metrics)
        primary = candidates[0].primary
        metrics = tuple([primary] + [n for n in names if n != primary]) if primary else tuple(names)
    head = ["iter", "params (M)", "GFLOPs", "param sparsity", "FLOPs sparsity", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in candidates:
        cells = [str(c.iteration), f"{c.params / 1e6:.3f}", f"{c.flops / 1e9:.3f}",
                 f"{c.param_sparsity:.1%}", f"{c.flops_sparsity:.1%}",
                 *[f"{c.metrics.get(m, float('nan')):.4f}" for m in metrics]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
