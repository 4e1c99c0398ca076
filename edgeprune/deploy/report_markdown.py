"""The sweep report in markdown: per-target tables with the knee marked, the across-targets summary,
and the text ``edgeprune sweep`` prints."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from edgeprune.deploy.accuracy import accuracy_lines, metric_cell
from edgeprune.deploy.predicted import prediction_line
from edgeprune.deploy.refine import refinement_lines
from edgeprune.deploy.report_rows import candidates_from, measured_with, target_rows


def _fmt(v: Any, spec: str, empty: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return empty
    return format(v, spec)


def markdown_table(res, tr) -> str:
    """The per-target markdown table with the knee marked."""
    rows = target_rows(res, tr)
    metric = next((r["primary"] for r in rows if r["primary"]), None) or "accuracy"
    head = [
        "candidate",
        "param sparsity",
        "params (M)",
        "GFLOPs",
        metric,
        "median ms",
        *(["predicted ms"] if any(r["predicted_ms"] is not None for r in rows) else []),
        "p90 ms",
        "CoV",
        "speedup",
        "knee",
    ]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        mark = "**<- knee**" if r["knee"] else ("below floor" if not r["eligible"] else "")
        if r["inverted"]:
            mark = (mark + " inverted").strip()
        if r["unstable"]:
            mark = (mark + " unstable").strip()
        cells = [
            r["candidate"],
            f"{r['param_sparsity']:.1%}",
            _fmt(r["params"] and r["params"] / 1e6, ".3f"),
            _fmt(r["gflops"], ".2f"),
            metric_cell(r["metric"], r.get("metric_interval")),
            f"{r['median_ms']:.3f}",
            *([_fmt(r["predicted_ms"], ".3f")] if "predicted ms" in head else []),
            f"{r['p90_ms']:.3f}",
            f"{r['cov']:.3f}",
            _fmt(r["speedup"], ".2f") + "x",
            mark,
        ]
        if r["knee"]:
            cells = [f"**{x}**" if x and not x.startswith("**") else x for x in cells]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def summary_text(res) -> str:
    """What the CLI prints after a sweep: per target, how it was measured, the table, knee, inversions."""
    lines = []
    for name, tr in res.targets.items():
        lines += [f"\n== {name}: {measured_with(tr)}\n", markdown_table(res, tr), f"\nknee: {tr.knee.reason}"]
        if candidates_from(tr):
            lines.append(f"candidates: {candidates_from(tr)['text']}")
        if prediction_line(tr):
            lines.append(prediction_line(tr))
        for inv in tr.knee.inversions:
            lines.append(f"inversion: {inv.text()}; fix: {tr.advice.get(inv.slower_id, '')}")
        if tr.bundle:
            lines.append(f"bundle: {tr.bundle}")
    lines += [f"\n== {name}: FAILED: {err}" for name, err in res.failed.items()]
    return "\n".join(lines)


def across_targets(res) -> list[str]:
    """Markdown lines: whether the knee agrees between targets, and the measured reason per target."""
    knees = {name: tr.knee for name, tr in res.targets.items()}
    picks = {k.candidate_id for k in knees.values()}
    if len(picks) == 1:
        head = f"The knee agrees on all {len(knees)} target(s): `{next(iter(picks))}`."
    else:
        pairs = ", ".join(f"`{t}` -> `{k.candidate_id}`" for t, k in knees.items())
        head = f"The knee differs between targets: {pairs}."
    lines = ["## Across targets", "", head, ""]
    for name, k in knees.items():
        if k.index is None:
            lines.append(f"- `{name}`: no candidate is eligible ({k.reason}).")
            continue
        i, m = k.index, k.medians_ms
        text = f"- `{name}`: `{k.candidate_id}` runs {m[0] / m[i]:.2f}x faster than unpruned"
        later = [j for j in range(i + 1, len(m)) if k.eligible[j]]
        earlier = [j for j in range(i) if k.eligible[j]]
        if later:
            j = min(later, key=lambda j: m[j])
            gain = (m[i] - m[j]) / m[i]
            faster = f"only {gain:.1%} faster" if gain > 0 else "not faster"
            text += (f"; the best sparser eligible candidate `{k.ids[j]}` is {faster} (tolerance "
                     f"{k.tolerance_ms[i]:.3f} ms): more pruning buys no latency on this target")
        elif earlier:
            prev = earlier[-1]
            cut = (m[prev] - m[i]) / m[prev]
            text += (f"; the last step from `{k.ids[prev]}` still cut {cut:.1%}, more than the tolerance, "
                     "and no sparser candidate is eligible: latency had not stopped improving")
            if any(not e for e in k.eligible[i + 1 :]):
                text += " (sparser candidates fall below the accuracy floor)"
        lines.append(text + ".")
    return lines + [""]


def _rel(path: str, base: Path) -> str:
    p = Path(path)
    return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)


def _count_line(res) -> str:
    """How many candidates were measured on how many targets (per-target runs: each on its own)."""
    if any(getattr(tr, "per_target", False) for tr in res.targets.values()):
        per = ", ".join(f"`{n}` {len(tr.knee.ids)}" for n, tr in res.targets.items())
        return (f"Per-target pruning: each target measured on its own run's candidates ({per}) - "
                f"{len(res.candidates)} candidates in all.")
    return f"{len(res.candidates)} candidates x {len(res.targets)} targets."


def markdown_report(res, plots: dict[str, dict[str, str]]) -> str:
    """report.md: the knee rule, the across-targets summary, then per target its table, knee and plots."""
    out = Path(res.out_dir)
    md = [
        "# edgeprune sweep report",
        "",
        _count_line(res) + " Knee rule: the least sparse "
        "candidate whose median latency is within max(tau x its median, the measured noise of the "
        "difference) of the best median among eligible candidates at least as sparse "
        "(`edgeprune.deploy.knee`).",
        "",
    ]
    if "all" in plots:
        md += [f"![speedup per target](plots/{Path(plots['all']['speedup']).name})", ""]
    md += across_targets(res)
    for name, tr in res.targets.items():
        md += [
            f"## Target `{name}`",
            "",
            f"Measured with: {measured_with(tr)}.",
            "",
            *([f"Candidates: {candidates_from(tr)['text']}.", ""] if candidates_from(tr) else []),
            markdown_table(res, tr),
            "",
            f"Knee (tau = {tr.knee.tau:g}): {tr.knee.reason}.",
            "",
            *accuracy_lines(res, tr),
        ]
        line = prediction_line(tr)
        if line:
            md += [line, ""]
        md += refinement_lines(tr)
        if tr.knee.inversions:
            md.append("Latency inversions (a more pruned model that is slower):")
            for inv in tr.knee.inversions:
                md.append(f"- {inv.text()}. Fix: {tr.advice.get(inv.slower_id, '')}")
            md.append("")
        if tr.bundle:
            acc = f"; accuracy on {tr.target.runtime} output: {tr.pick_accuracy}" if tr.pick_accuracy else ""
            md += [f"Bundle: `{_rel(tr.bundle, out)}`{acc}", ""]
        lat, par = (Path(plots[name][k]).name for k in ("latency", "pareto"))
        md += [f"![latency](plots/{lat}) ![pareto](plots/{par})", ""]
    for name, err in res.failed.items():
        md += [f"## Target `{name}`: FAILED", "", f"{err}", "", "Rerun the sweep to retry it.", ""]
    return "\n".join(md)
