"""Per-target candidates: one latency-driven ``iterative_prune`` per target, each with its own latency model.

A joint run scores every (group, rate) by the latency saved averaged over all targets, so every
target gets the same candidates. ``per_target_prune`` instead runs one loop per target with only
that target's latency model (selection, snapping and the until-knee stop follow its own steps)::

    <run_dir>/per_target.json          {"format": 1, "targets": {target name: subfolder}}
    <run_dir>/<target name>/           an ordinary run folder (run.json, iter_XX/), resumable
    <run_dir>/sensitivity_cache/       content-keyed sensitivity results shared by the runs

Cost: N targets take about N x the pruning time of one run. Only what does not depend on the target
is shared: the sensitivity analysis of the unpruned model (iteration 1 of every run), computed once.
Each run evaluates its own unpruned candidate (one evaluation). ``edgeprune sweep`` recognises the
marker file and measures each target on its own run's candidates.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import read_json, write_json
from edgeprune.iterative.options import KEYWORDS, LatencyOptions
from edgeprune.options import gather
from edgeprune.runlock import locks_run_dir

if TYPE_CHECKING:  # the loop imports torch; reading the marker (sweep) does not need it
    from edgeprune.iterative.loop import IterativeResult

MARKER = "per_target.json"
_CACHE = "sensitivity_cache"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
FORMAT = 1


@dataclass
class PerTargetResult:
    """The runs of ``per_target_prune``: ``results[target name]`` is that target's ``IterativeResult``."""

    run_dir: Path
    results: dict[str, IterativeResult]

    def table(self) -> str:
        """Each target's candidate table under a heading naming its run folder and why it stopped."""
        parts = []
        for name, r in self.results.items():
            parts.append(f"## {name} ({r.run_dir}): stopped: {r.stop_reason}; final candidate: "
                         f"iteration {r.final_iteration}\n\n{r.table()}")
        return "\n\n".join(parts)


def read_marker(run_dir: str | Path) -> dict[str, Path] | None:
    """``{target name: its run folder}`` of a per-target run folder, or None for any other folder.

    Subfolders must stay inside ``run_dir`` (a marker naming ``../x`` or a symlink out is refused).
    """
    root = Path(run_dir)
    path = root / MARKER
    if not path.is_file():
        return None
    try:
        info = read_json(path)
    except ValueError as exc:
        raise InvalidConfigError(f"{path} is not valid JSON ({exc}); rerun the per-target prune") from None
    targets = info.get("targets") if isinstance(info, dict) else None
    if not isinstance(targets, dict) or not targets:
        raise InvalidConfigError(f"{path} lists no targets (expected {{'targets': {{name: subfolder}}}})")
    out, base = {}, root.resolve()
    for name, sub in targets.items():
        d = (root / str(sub)).resolve()
        if not isinstance(sub, str) or d.parent != base:
            raise InvalidConfigError(f"{path}: target '{name}' names the folder {sub!r}, which is not a "
                                     f"subfolder of {root}")
        out[str(name)] = root / sub
    return out


def _check(models: Sequence[Any], targets: Sequence[str] | None, latency: LatencyOptions,
           selection: Any) -> list[Any]:
    """The latency models to run, one per target; a clear error for a config that cannot work."""
    if not models:
        raise InvalidConfigError("per-target pruning needs a latency model per target (latency_models; "
                                 "prune config: latency.targets)")
    by_name = {lm.name: lm for lm in models}
    if len(by_name) != len(models):
        raise InvalidConfigError("latency models need distinct names (one per target)")
    names = list(by_name) if targets is None else [str(t) for t in targets]
    unknown = [n for n in names if n not in by_name]
    if unknown or not names:
        raise InvalidConfigError(f"per-target pruning: unknown target(s) {unknown or names}; the latency "
                                 f"models are for {sorted(by_name)}")
    bad = [n for n in names if not _NAME_RE.match(n) or n == _CACHE]
    if bad:
        raise InvalidConfigError(f"per-target pruning: target name(s) {bad} cannot name a run folder "
                                 f"(letters, digits, '.', '_' or '-'; not '{_CACHE}')")
    if not (selection.n_latency or latency.snap or latency.until_knee):
        raise InvalidConfigError("per-target pruning would make the same candidates for every target: use "
                                 "the latency model in selection (n_latency), snapping or until_knee")
    return [by_name[n] for n in dict.fromkeys(names)]


@locks_run_dir("run_dir")
def per_target_prune(
    model: Any,
    example_inputs: Any,
    evaluator: Any,
    finetune: Callable[[Any, int], Any],
    *,
    run_dir: str | Path,
    latency: LatencyOptions | None = None,
    targets: Sequence[str] | None = None,
    fresh: bool = False,
    progress: bool = True,
    **options: Any,
) -> PerTargetResult:
    """One ``iterative_prune`` per target into ``run_dir/<target>/``, each with only its own latency model.

    ``latency`` (``LatencyOptions`` or its keywords ``latency_models``, ``until_knee``, ``knee_tau``,
    ``snap``): one model per target; ``targets`` restricts the runs to those names. Every other
    keyword (stop, prune, executor, ``sensitivity_evaluator``) goes to each ``iterative_prune``.
    Rerunning resumes each target's run; ``fresh=True`` moves the whole folder aside first.
    Cost: about N targets x the pruning time of one run (the unpruned model's sensitivity is shared).
    """
    from edgeprune.iterative.loop import iterative_prune
    from edgeprune.iterative.options import PruneOptions

    latency = gather(LatencyOptions, latency, options, KEYWORDS["latency"], "per_target_prune")
    prune = options.get("prune") or PruneOptions(**{k: options[k] for k in KEYWORDS["prune"] if k in options})
    chosen = _check(latency.models, targets, latency, prune.selection)
    root = Path(run_dir)
    if fresh and root.exists() and any(root.iterdir()):
        aside = root.with_name(f"{root.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(str(root), str(aside))  # moved, not deleted: the user may still want it
    if (root / "run.json").exists():
        raise InvalidConfigError(f"{root} holds a joint run (run.json), not a per-target one; use another "
                                 "run_dir, or fresh=True to move it aside")
    marker = read_marker(root) or {}
    if root.exists() and not marker and any(p.name != MARKER for p in root.iterdir()):
        raise InvalidConfigError(f"{root} is not empty and holds no {MARKER}; refusing to write into it "
                                 "(use another run_dir, or fresh=True to move it aside)")
    mapping = {name: d.name for name, d in marker.items()}
    mapping.update({lm.name: lm.name for lm in chosen})  # target names are safe folder names
    write_json(root / MARKER, {"format": FORMAT, "targets": mapping})
    results = {}
    for lm in chosen:
        if progress:
            print(f"[edgeprune prune] target '{lm.name}': run {root / lm.name}", flush=True)
        results[lm.name] = iterative_prune(
            model, example_inputs, evaluator, finetune, run_dir=root / lm.name,
            latency=replace(latency, models=(lm,)), sensitivity_cache=root / _CACHE,
            progress=progress, **options)
    return PerTargetResult(root, results)
