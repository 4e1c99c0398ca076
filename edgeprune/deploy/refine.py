"""Knee refinement: between the two coarse candidates around a target's knee, interpolated plans.

The iterative loop moves in coarse steps, so the knee it shows lies somewhere between candidate
``k - 1`` (still more than the tolerance slower than a sparser one) and the knee ``k``. Each group of
the less sparse candidate ``a`` is pruned one-shot towards its count in the sparser ``b``:
``keep(t) = count_a - t x (count_a - count_b)``, rounded to the target's channel multiple, for a few
``t`` in (0, 1). These models are exported, compiled and measured side by side with ``a`` and ``b``
(at most ``MAX_EXTRA`` extra compile + profile per target), and the knee rule is applied to the
coarse and refined points together.

A refined point is one-shot (no fine-tuning): its accuracy is measured with the sweep's evaluator
when one is given, else assumed equal to the worse of its two neighbours (said in the report). The
bundle stays the coarse knee; a refined knee is a plan to fine-tune next.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from edgeprune.deploy.knee import KneePoint, KneeResult, select_knee

MAX_EXTRA = 6  # compile + profile runs per target beyond the coarse sweep
FRACTIONS = (0.25, 0.5, 0.75)


def interpolated_counts(a: Mapping[str, int], b: Mapping[str, int], t: float, multiple: int = 1) -> dict:
    """Per group, the count ``t`` of the way from ``a`` to ``b`` (never above ``a`` nor below ``b``),
    rounded to ``multiple``."""
    out = {}
    for gid, ca in a.items():
        cb = min(b.get(gid, ca), ca)
        keep = ca - t * (ca - cb)
        if multiple > 1 and ca > multiple:
            keep = multiple * round(keep / multiple)
        out[gid] = int(min(ca, max(cb, round(keep), 1)))
    return out


def refine_knee(coarse: Sequence[KneePoint], refined: Sequence[KneePoint], tau: float,
                **knee_kwargs: Any) -> KneeResult:
    """The knee rule over coarse and refined points together (sparsity order)."""
    return select_knee([*coarse, *refined], tau=tau, **knee_kwargs)


def bracket(knee: KneeResult) -> tuple[int, int] | None:
    """Positions (in sparsity order) of the two coarse candidates around the knee, or None."""
    k = knee.index
    if k is None or k == 0:
        return None
    prev = [i for i in range(k) if knee.eligible[i]]
    return (prev[-1], k) if prev else None


def group_counts(model: Any, example_inputs: Any) -> dict[str, int]:
    """Channel count of every prunable group of ``model``."""
    from edgeprune.pruning import trace

    return {g.id: g.channels for g in trace(model, example_inputs).prunable_groups}


def interpolated_models(model_a: Any, model_b: Any, example_inputs: Any, fractions: Sequence[float],
                        multiple: int) -> list[tuple[float, Any]]:
    """One-shot models between ``model_a`` and ``model_b`` (same architecture, ``b`` sparser)."""
    from edgeprune.pruning import apply, plan, trace

    ca, cb = group_counts(model_a, example_inputs), group_counts(model_b, example_inputs)
    out = []
    for t in fractions:
        counts = interpolated_counts(ca, cb, t, multiple)
        rates = {g: (ca[g] - k) / ca[g] for g, k in counts.items() if k < ca[g]}
        m = copy.deepcopy(model_a).eval()
        if rates:
            m = apply(m, plan(trace(m, example_inputs), rates=rates, round_to=1))
        out.append((t, m.eval()))
    return out


def refine_target(res: Any, tr: Any, example_inputs: Any, evaluator: Any = None,
                  fractions: Sequence[float] = FRACTIONS, floor: float | None = None) -> dict | None:
    """Refine one target's knee (see the module docstring); returns the record stored in the report."""
    from edgeprune.complexity import count_params
    from edgeprune.deploy.candidate_files import SweepCandidate, export_candidates
    from edgeprune.deploy.measure import measure_target
    from edgeprune.deploy.targets import Target
    from edgeprune.runtimes.profiling import LatencyStats, ProfileConfig

    pair = bracket(tr.knee)
    by_id = {c.id: c for c in res.candidates}
    if pair is None:
        return None
    a, b = (by_id[tr.knee.ids[i]] for i in pair)
    if not (callable(a.model) and callable(b.model)):
        return None
    fractions = list(fractions)[: MAX_EXTRA - 2]  # a and b are compiled again for the side-by-side pass
    ma, mb = (c.load_model() for c in (a, b))
    base_params = res.candidates[0].params if res.candidates[0].sparsity == 0 else None
    refined = []
    for t, m in interpolated_models(ma, mb, example_inputs, fractions, tr.target.multiple):
        params = count_params(m)
        sparsity = 1 - params / base_params if base_params else a.sparsity + t * (b.sparsity - a.sparsity)
        metrics = dict(evaluator(m)) if evaluator is not None else {}
        primary = a.primary
        if primary and primary not in metrics and a.metric is not None and b.metric is not None:
            metrics = {primary: min(a.metric, b.metric)}  # assumed, see the module docstring
        refined.append(SweepCandidate(f"{a.id}-r{int(round(t * 100)):02d}", sparsity, model=m,
                                      params=params, metrics=metrics, primary=primary))
    out_dir = res.out_dir / "refine" / tr.target.name
    export_candidates(refined, out_dir, tuple(example_inputs.shape[-2:]), example_inputs)
    pair_cands = [SweepCandidate(c.id, c.sparsity, onnx_path=c.onnx_path, params=c.params,
                                 metrics=c.metrics, primary=c.primary) for c in (a, b)]
    cands = sorted([*pair_cands, *refined], key=lambda c: c.sparsity)
    t = tr.target
    sub = Target(f"{t.name}-refine", t.runtime, t.precision, t.threads, dict(t.options), t.device, t.host,
                 t.channel_multiple)
    config = ProfileConfig.make(tr.record.get("key", {}).get("profile"))
    rec = measure_target(sub, cands, out_dir, config, tuple(example_inputs.shape[-2:]))
    stats = {cid: LatencyStats.from_dict(v["stats"]) for cid, v in rec["candidates"].items()}
    pts = [KneePoint(c.id, c.sparsity, stats[c.id].samples_ms or [stats[c.id].median_ms], c.metric)
           for c in cands]
    knee = select_knee(pts, tau=tr.knee.tau, accuracy_floor=floor)  # absolute: a is not the unpruned one
    return {
        "between": [a.id, b.id], "fractions": fractions, "extra_compiles": len(cands),
        "accuracy": "measured (one-shot, no fine-tuning)" if evaluator is not None
        else "assumed equal to the worse coarse neighbour (one-shot points are not evaluated)",
        "points": [{"id": c.id, "sparsity": c.sparsity, "median_ms": stats[c.id].median_ms,
                    "cov": stats[c.id].cov, "metric": c.metric, "refined": c.id not in (a.id, b.id)}
                   for c in cands],
        "knee": knee.candidate_id, "reason": knee.reason,
    }


def refinement_lines(tr: Any) -> list[str]:
    """Markdown lines: the coarse and refined points around the knee."""
    r = getattr(tr, "refined", None)
    if not r:
        return []
    lines = [f"Knee refinement between `{r['between'][0]}` and `{r['between'][1]}` ({r['extra_compiles']} "
             f"compile + profile, measured side by side; accuracy {r['accuracy']}):", "",
             "| point | kind | param sparsity | median ms | CoV |", "|---|---|---|---|---|"]
    for p in r["points"]:
        mark = " **<- refined knee**" if p["id"] == r["knee"] else ""
        lines.append(f"| {p['id']}{mark} | {'refined' if p['refined'] else 'coarse'} | {p['sparsity']:.1%} | "
                     f"{p['median_ms']:.3f} | {p['cov']:.3f} |")
    return [*lines, "", f"Refined knee: {r['reason']}.", ""]
