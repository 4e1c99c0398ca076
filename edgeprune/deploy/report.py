"""The sweep report: ``report.md``, ``report.json`` and PNG plots (matplotlib, Agg backend).

Per target: a table (sparsity, params, GFLOPs, accuracy, median/p90 ms, CoV, speedup over the
unpruned model, knee marked), the knee's reason, latency inversions with the rounding that removes
them, a latency-vs-sparsity plot (median with p10-p90 band) and an accuracy-vs-latency (Pareto)
plot. Every table and figure says how it was measured: runtime and version, precision, threads,
CPU/device, inference only or with pre/post-processing, side by side or one after another.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from edgeprune.deploy.accuracy import accuracy_lines, interval_of, metric_cell
from edgeprune.deploy.predicted import prediction_line
from edgeprune.deploy.refine import refinement_lines
from edgeprune.fileio import atomic_write_bytes, atomic_write_text, write_json

KNEE_COLOR = "#d62728"


def _fmt(v: Any, spec: str, empty: str = "-") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return empty
    return format(v, spec)


def measured_with(tr) -> str:
    """One line: runtime, version, precision, threads, device, what the time includes, how measured."""
    t = tr.target
    env = next(iter(tr.stats.values())).env if tr.stats else {}
    includes = next(iter(tr.stats.values())).includes if tr.stats else "inference"
    version = tr.record.get("runtime_version") or env.get("runtime_version") or "?"
    threads = t.threads if t.threads else f"default ({env.get('usable_cores', '?')} usable cores)"
    where = f"device '{t.device}'" if t.remote else env.get("cpu_model", "this machine")
    n = [s.n for s in tr.stats.values()]
    opts = ", ".join(f"{k}={v}" for k, v in sorted(t.options.items()))
    return (
        f"{t.runtime} {version}, {t.precision}, threads {threads}" + (f" ({opts})" if opts else "")
        + f", on {where}; time = "
        f"{'inference only' if includes == 'inference' else includes}, batch 1; "
        f"{tr.record.get('measured', '')}; {min(n) if n else 0}-{max(n) if n else 0} runs per candidate"
        + (f"; load avg {env.get('load_avg_1m')}" if env.get("load_avg_1m") is not None else "")
    )


def target_rows(res, tr) -> list[dict]:
    """The table rows of one target in sparsity order."""
    by_id = {c.id: c for c in res.candidates}
    base = tr.stats[tr.knee.ids[0]].median_ms
    rows = []
    for k, cid in enumerate(tr.knee.ids):
        c, s = by_id[cid], tr.stats[cid]
        rows.append(
            {
                "candidate": cid,
                "param_sparsity": c.sparsity,
                "params": c.params,
                "gflops": c.flops / 1e9 if c.flops else None,
                "metric": c.metric,
                "metric_interval": interval_of(c.metrics, c.primary),
                "primary": c.primary,
                "median_ms": s.median_ms,
                "p10_ms": s.p10_ms,
                "p90_ms": s.p90_ms,
                "cov": s.cov,
                "n": s.n,
                "unstable": s.unstable,
                "speedup": base / s.median_ms if s.median_ms > 0 else None,
                "eligible": tr.knee.eligible[k],
                "tolerance_ms": tr.knee.tolerance_ms[k],
                "knee": k == tr.knee.index,
                "inverted": any(i.slower_id == cid for i in tr.knee.inversions),
                "predicted_ms": (getattr(tr, "predicted", None) or {}).get(cid),
            }
        )
    return rows


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
        if prediction_line(tr):
            lines.append(prediction_line(tr))
        for inv in tr.knee.inversions:
            lines.append(f"inversion: {inv.text()}; fix: {tr.advice.get(inv.slower_id, '')}")
        if tr.bundle:
            lines.append(f"bundle: {tr.bundle}")
    lines += [f"\n== {name}: FAILED: {err}" for name, err in res.failed.items()]
    return "\n".join(lines)


def _save(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return str(path)


def plot_latency(res, tr, path: Path) -> str:
    """Median latency with p10-p90 band vs parameter sparsity; knee starred, inversions crossed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = target_rows(res, tr)
    x = [r["param_sparsity"] * 100 for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    ax.fill_between(
        x,
        [r["p10_ms"] for r in rows],
        [r["p90_ms"] for r in rows],
        color="#1f77b4",
        alpha=0.2,
        label="p10-p90",
    )
    ax.plot(x, [r["median_ms"] for r in rows], "o-", color="#1f77b4", label="median")
    ax.axhline(rows[0]["median_ms"], color="gray", ls="--", lw=0.8, label="unpruned median")
    pred = [(r["param_sparsity"] * 100, r["predicted_ms"]) for r in rows if r["predicted_ms"] is not None]
    if pred:
        ax.plot(*zip(*pred), "s:", color="#2ca02c", ms=5, label="predicted (latency model)")
    inv = [r for r in rows if r["inverted"]]
    if inv:
        ax.plot(
            [r["param_sparsity"] * 100 for r in inv],
            [r["median_ms"] for r in inv],
            "x",
            ms=11,
            mew=2,
            color="#ff7f0e",
            label="inversion (slower than a less sparse one)",
        )
    low = [r for r in rows if not r["eligible"]]
    if low:
        ax.plot(
            [r["param_sparsity"] * 100 for r in low],
            [r["median_ms"] for r in low],
            "s",
            mfc="none",
            color="gray",
            ms=9,
            label="below accuracy floor",
        )
    if tr.knee.index is not None:
        k = rows[tr.knee.index]
        ax.plot(
            [k["param_sparsity"] * 100],
            [k["median_ms"]],
            "*",
            ms=18,
            color=KNEE_COLOR,
            zorder=5,
            label=f"knee: {k['candidate']} ({k['median_ms']:.2f} ms, {k['speedup']:.2f}x)",
        )
    ax.set_xlabel("parameter sparsity (% of parameters removed)")
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(f"{tr.target.name}: latency vs sparsity", fontsize=11)
    fig.text(0.01, -0.02, _wrap(measured_with(tr)), fontsize=7, va="top")
    ax.legend(fontsize=8, loc="best")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_pareto(res, tr, path: Path) -> str:
    """Accuracy vs median latency; Pareto-optimal candidates joined, knee starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in target_rows(res, tr) if r["metric"] is not None]
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    if not rows:
        ax.text(
            0.5, 0.5, "no accuracy metrics recorded for the candidates", ha="center", transform=ax.transAxes
        )
    else:
        front, best = [], -math.inf
        for r in sorted(rows, key=lambda r: r["median_ms"]):
            if r["metric"] > best:
                front.append(r)
                best = r["metric"]
        ax.scatter(
            [r["median_ms"] for r in rows],
            [r["metric"] for r in rows],
            color="#1f77b4",
            zorder=3,
            label="candidates",
        )
        front.sort(key=lambda r: r["median_ms"])
        ax.plot(
            [r["median_ms"] for r in front],
            [r["metric"] for r in front],
            "-",
            color="#2ca02c",
            label="Pareto front",
        )
        for r in rows:
            ax.annotate(
                f"{r['param_sparsity']:.0%}",
                (r["median_ms"], r["metric"]),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        knee = next((r for r in rows if r["knee"]), None)
        if knee:
            ax.plot(
                [knee["median_ms"]],
                [knee["metric"]],
                "*",
                ms=18,
                color=KNEE_COLOR,
                zorder=5,
                label=f"knee: {knee['candidate']}",
            )
        ax.set_ylabel(rows[0]["primary"] or "accuracy")
    ax.set_xlabel("median latency (ms)")
    ax.grid(alpha=0.3)
    ax.set_title(f"{tr.target.name}: accuracy vs latency (labels: parameter sparsity)", fontsize=11)
    fig.text(
        0.01,
        -0.02,
        _wrap(measured_with(tr) + "; accuracy: PyTorch evaluation of each candidate"),
        fontsize=7,
        va="top",
    )
    ax.legend(fontsize=8, loc="best")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_speedup_all(res, path: Path) -> str:
    """Speedup over the unpruned model vs sparsity, every target on one axis, knees starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for k, (name, tr) in enumerate(res.targets.items()):
        rows = target_rows(res, tr)
        color = f"C{k % 10}"
        ax.plot(
            [r["param_sparsity"] * 100 for r in rows],
            [r["speedup"] for r in rows],
            "o-",
            color=color,
            label=f"{name} ({tr.target.describe()})",
        )
        if tr.knee.index is not None:
            r = rows[tr.knee.index]
            ax.plot(
                [r["param_sparsity"] * 100], [r["speedup"]], "*", ms=18, color=color, mec="black", zorder=5
            )
    ax.axhline(1.0, color="gray", ls="--", lw=0.8)
    ax.set_xlabel("parameter sparsity (% of parameters removed)")
    ax.set_ylabel("speedup over unpruned (median latency ratio)")
    ax.set_title("speedup per target (stars: knee)", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.text(
        0.01,
        -0.02,
        "each target measured separately, its candidates side by side; inference only, batch 1",
        fontsize=7,
        va="top",
    )
    out = _save(fig, path)
    plt.close(fig)
    return out


def _rel(path: str, base: Path) -> str:
    p = Path(path)
    return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)


def _wrap(text: str, width: int = 130) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def report_dict(res) -> dict:
    """The JSON report: candidates, and per target its settings, rows, knee, inversions, bundle."""
    return {
        "candidates": [
            {
                "id": c.id,
                "param_sparsity": c.sparsity,
                "params": c.params,
                "flops": c.flops,
                "metrics": c.metrics,
                "primary": c.primary,
                "plan_sha256": c.plan_sha256,
                "onnx": c.onnx_path,
            }
            for c in res.candidates
        ],
        "targets": {
            name: {
                "target": tr.target.to_dict(),
                "measured_with": measured_with(tr),
                "runtime_version": tr.record.get("runtime_version"),
                "environment": next(iter(tr.stats.values())).env if tr.stats else {},
                "rows": target_rows(res, tr),
                "knee": tr.knee.to_dict(),
                "inversion_advice": tr.advice,
                "bundle": tr.bundle,
                "pick_accuracy": tr.pick_accuracy,
                "latency_model": getattr(tr, "prediction", None),
                "refinement": getattr(tr, "refined", None),
                "recovery": getattr(tr, "recovery", None),
            }
            for name, tr in res.targets.items()
        },
    }


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


def write_report(res) -> dict:
    """Write report.md, report.json and plots/ under ``res.out_dir``; returns their paths."""
    out = Path(res.out_dir)
    plots: dict[str, dict[str, str]] = {}
    md = [
        "# edgeprune sweep report",
        "",
        f"{len(res.candidates)} candidates x {len(res.targets)} targets. Knee rule: the least sparse "
        "candidate whose median latency is within max(tau x its median, the measured noise of the "
        "difference) of the best median among eligible candidates at least as sparse "
        "(`edgeprune.deploy.knee`).",
        "",
    ]
    if len(res.targets) > 1:
        p = plot_speedup_all(res, out / "plots" / "speedup_all.png")
        md += [f"![speedup per target](plots/{Path(p).name})", ""]
        plots["all"] = {"speedup": p}
    md += across_targets(res)
    for name, tr in res.targets.items():
        lat = plot_latency(res, tr, out / "plots" / f"latency_{name}.png")
        par = plot_pareto(res, tr, out / "plots" / f"pareto_{name}.png")
        plots[name] = {"latency": lat, "pareto": par}
        md += [
            f"## Target `{name}`",
            "",
            f"Measured with: {measured_with(tr)}.",
            "",
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
            md += [
                f"Bundle: `{_rel(tr.bundle, out)}`"
                + (
                    f"; accuracy on {tr.target.runtime} output: {tr.pick_accuracy}"
                    if tr.pick_accuracy
                    else ""
                ),
                "",
            ]
        md += [f"![latency](plots/{Path(lat).name}) ![pareto](plots/{Path(par).name})", ""]
    for name, err in getattr(res, "failed", {}).items():
        md += [f"## Target `{name}`: FAILED", "", f"{err}", "", "Rerun the sweep to retry it.", ""]
    atomic_write_text(out / "report.md", "\n".join(md))
    d = report_dict(res)
    d["plots"] = plots
    d["failed_targets"] = dict(getattr(res, "failed", {}))
    write_json(out / "report.json", d)
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json"), "plots": plots}
