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
run_dir/iter_XX/metrics.json   written last: the candidate is finished
```
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_bytes, read_json

_ITER_RE = re.compile(r"^iter_(\d+)$")


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


def list_candidates(run_dir: str | Path) -> list[dict[str, Any]]:
    """``metrics.json`` of every finished candidate in ``run_dir``, by iteration."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InvalidConfigError(f"run folder {run_dir} does not exist")
    found = []
    for p in run_dir.iterdir():
        m = _ITER_RE.match(p.name)
        if m and (p / "metrics.json").exists():
            found.append((int(m.group(1)), read_json(p / "metrics.json")))
    return [metrics for _, metrics in sorted(found, key=lambda x: x[0])]


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


def format_table(candidates: list[dict[str, Any]], metrics: tuple[str, ...] | None = None) -> str:
    """Markdown table like the paper's: iteration, params, GFLOPs, sparsities, metrics."""
    if not candidates:
        return "(no candidates)"
    if metrics is None:
        names = list(candidates[0].get("metrics", {}))
        primary = candidates[0].get("primary")
        metrics = tuple([primary] + [n for n in names if n != primary]) if primary else tuple(names)
    head = ["iter", "params (M)", "GFLOPs", "param sparsity", "FLOPs sparsity", *metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in candidates:
        cells = [str(c["iteration"]), f"{c['params'] / 1e6:.3f}", f"{c['flops'] / 1e9:.3f}",
                 f"{c['param_sparsity']:.1%}", f"{c['flops_sparsity']:.1%}",
                 *[f"{c['metrics'].get(m, float('nan')):.4f}" for m in metrics]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
