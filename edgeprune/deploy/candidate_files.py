"""The files a sweep makes of each candidate, cached: its ONNX export and its compiled artifact per target.

``onnx/<cand>.onnx`` (+ ``.json``: the cache key) is exported once per plan and weights;
``compiled/<target>/<cand>/`` is compiled again only when the ONNX file, precision, threads,
runtime options or runtime version change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeprune.deploy.targets import Target
from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import read_json, sha256_file, write_json
from edgeprune.runtimes.base import Artifact


@dataclass
class SweepCandidate:
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

    def load_model(self) -> Any:
        """The candidate's nn.Module (``model`` itself, or what its zero-argument loader returns)."""
        if self.model is None:
            raise InvalidConfigError(f"candidate '{self.id}' has neither an ONNX file nor a model")
        return self.model if hasattr(self.model, "state_dict") else self.model()


def metric_interval(c: SweepCandidate) -> tuple[float, float] | None:
    """The bootstrap interval of the candidate's primary metric, when its evaluator measured one."""
    lo, hi = (c.metrics.get(f"{c.primary}_{end}") for end in ("low", "high"))
    return None if lo is None or hi is None else (float(lo), float(hi))


def candidates_from_run(run_dir: str | Path, model_factory: Callable[[], Any] | None) -> list[SweepCandidate]:
    """The finished candidates of an iterative pruning run (models are loaded only when exported)."""
    from edgeprune.iterative import candidates as ic

    run_dir = Path(run_dir)
    out = []
    for rec in ic.list_candidates(run_dir):
        d = ic.iter_dir(run_dir, rec.iteration)
        key = "-".join(sha256_file(d / f)[:16] for f in ("plan.json", "weights.pt") if (d / f).exists())

        def load(it=rec.iteration):
            if model_factory is None:
                raise InvalidConfigError("sweeping a run folder needs model_factory (the unpruned model)")
            return ic.load_candidate(run_dir, it, model_factory)

        out.append(SweepCandidate(id=d.name, sparsity=rec.param_sparsity, model=load, params=rec.params,
                                  flops=rec.flops, metrics=dict(rec.metrics), primary=rec.primary,
                                  plan_sha256=rec.plan_sha256 or _plan_sha(d / "plan.json"),
                                  cache_key=key or None))
    if not out:
        raise InvalidConfigError(f"run folder {run_dir} has no finished candidate (no iter_XX/metrics.json)")
    return out


def candidates_per_target(runs: dict[str, Path], targets: Sequence[str],
                          model_factory: Callable[[], Any] | None) -> dict[str, list[SweepCandidate]]:
    """Each target's candidates from its own run of a per-target prune (``runs``: name -> run folder).

    Ids are ``<target>.<iter_XX>`` so that candidates of different runs never share a file.
    """
    missing = [t for t in targets if t not in runs]
    if missing:
        raise InvalidConfigError(f"the per-target run has no run for target(s) {missing} (it has "
                                 f"{sorted(runs)}); sweep targets named like the prune config's "
                                 "latency.targets, or prune for these targets too")
    out = {}
    for name in targets:
        cands = candidates_from_run(runs[name], model_factory)
        for c in cands:
            c.id = f"{name}.{c.id}"
        out[name] = cands
    return out


def _plan_sha(path: Path) -> str | None:
    if not path.exists():
        return None
    from edgeprune.pruning import PruningPlan

    return PruningPlan.from_json(path.read_text(encoding="utf-8")).sha256()


def export_candidates(
    cands: Sequence[SweepCandidate],
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
        from edgeprune.export import export_onnx

        model = c.load_model()
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


def compile_cached(rt, target: Target, cand: SweepCandidate, workdir: Path) -> tuple[Artifact, bool]:
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
