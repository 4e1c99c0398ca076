"""The sweep report: ``report.md``, ``report.json`` and PNG plots, written under the sweep's folder.

Per target: a table (sparsity, params, GFLOPs, accuracy, median/p90 ms, CoV, speedup over the
unpruned model, knee marked), the knee's reason, latency inversions with the rounding that removes
them, a latency-vs-sparsity plot (median with p10-p90 band) and an accuracy-vs-latency (Pareto)
plot. Every table and figure says how it was measured: runtime and version, precision, threads,
CPU/device, inference only or with pre/post-processing, side by side or one after another.
Markdown: ``report_markdown``; plots: ``report_plots``; rows shared by all three: ``report_rows``.
"""

from __future__ import annotations

from pathlib import Path

from edgeprune.deploy.report_markdown import markdown_report
from edgeprune.deploy.report_plots import plot_latency, plot_pareto, plot_speedup_all
from edgeprune.deploy.report_rows import candidates_from, measured_with, target_rows
from edgeprune.fileio import atomic_write_text, write_json


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
                "candidates_from": candidates_from(tr),
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


def write_report(res) -> dict:
    """Write report.md, report.json and plots/ under ``res.out_dir``; returns their paths."""
    out = Path(res.out_dir)
    plots: dict[str, dict[str, str]] = {}
    if len(res.targets) > 1:
        plots["all"] = {"speedup": plot_speedup_all(res, out / "plots" / "speedup_all.png")}
    for name, tr in res.targets.items():
        plots[name] = {"latency": plot_latency(res, tr, out / "plots" / f"latency_{name}.png"),
                       "pareto": plot_pareto(res, tr, out / "plots" / f"pareto_{name}.png")}
    atomic_write_text(out / "report.md", markdown_report(res, plots))
    d = report_dict(res)
    d["plots"] = plots
    d["failed_targets"] = dict(res.failed)
    write_json(out / "report.json", d)
    return {"markdown": str(out / "report.md"), "json": str(out / "report.json"), "plots": plots}
