"""The sweep report's PNG plots (matplotlib, Agg): latency vs sparsity, accuracy vs latency, speedup."""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeprune.deploy.report_rows import measured_with, target_rows
from edgeprune.fileio import atomic_write_bytes

KNEE_COLOR = "#d62728"
SPARSITY_LABEL = "parameter sparsity (% of parameters removed)"


@contextmanager
def _figure(path: Path, title: str, footer: str) -> Iterator[Any]:
    """Axes of one report figure; on exit: grid, legend, title, the how-measured footer, saved atomically."""
    import matplotlib

    matplotlib.use("Agg")  # no display: plots are files
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    try:
        yield ax
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=11)
        ax.legend(fontsize=8, loc="best")
        fig.text(0.01, -0.02, "\n".join(textwrap.wrap(footer, 130)), fontsize=7, va="top")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        atomic_write_bytes(path, buf.getvalue())
    finally:
        plt.close(fig)


def _star(ax: Any, x: float, y: float, color: str, label: str | None = None, **kw: Any) -> None:
    """The knee's marker."""
    ax.plot([x], [y], "*", ms=18, color=color, zorder=5, label=label, **kw)


def plot_latency(res, tr, path: Path) -> str:
    """Median latency with p10-p90 band vs parameter sparsity; knee starred, inversions crossed."""
    rows = target_rows(res, tr)
    x = [r["param_sparsity"] * 100 for r in rows]
    with _figure(path, f"{tr.target.name}: latency vs sparsity", measured_with(tr)) as ax:
        ax.fill_between(x, [r["p10_ms"] for r in rows], [r["p90_ms"] for r in rows], color="#1f77b4",
                        alpha=0.2, label="p10-p90")
        ax.plot(x, [r["median_ms"] for r in rows], "o-", color="#1f77b4", label="median")
        ax.axhline(rows[0]["median_ms"], color="gray", ls="--", lw=0.8, label="unpruned median")
        pred = [(r["param_sparsity"] * 100, r["predicted_ms"]) for r in rows if r["predicted_ms"] is not None]
        if pred:
            ax.plot(*zip(*pred), "s:", color="#2ca02c", ms=5, label="predicted (latency model)")
        inv = [r for r in rows if r["inverted"]]
        if inv:
            ax.plot([r["param_sparsity"] * 100 for r in inv], [r["median_ms"] for r in inv], "x", ms=11,
                    mew=2, color="#ff7f0e", label="inversion (slower than a less sparse one)")
        low = [r for r in rows if not r["eligible"]]
        if low:
            ax.plot([r["param_sparsity"] * 100 for r in low], [r["median_ms"] for r in low], "s",
                    mfc="none", color="gray", ms=9, label="below accuracy floor")
        if tr.knee.index is not None:
            k = rows[tr.knee.index]
            _star(ax, k["param_sparsity"] * 100, k["median_ms"], KNEE_COLOR,
                  f"knee: {k['candidate']} ({k['median_ms']:.2f} ms, {k['speedup']:.2f}x)")
        ax.set_xlabel(SPARSITY_LABEL)
        ax.set_ylabel("latency (ms)")
        ax.set_ylim(bottom=0)
    return str(path)


def _pareto_front(rows: list[dict]) -> list[dict]:
    """The rows no faster row beats on the metric, fastest first."""
    front, best = [], -math.inf
    for r in sorted(rows, key=lambda r: r["median_ms"]):
        if r["metric"] > best:
            front.append(r)
            best = r["metric"]
    return front


def plot_pareto(res, tr, path: Path) -> str:
    """Accuracy vs median latency; Pareto-optimal candidates joined, knee starred."""
    rows = [r for r in target_rows(res, tr) if r["metric"] is not None]
    footer = measured_with(tr) + "; accuracy: PyTorch evaluation of each candidate"
    title = f"{tr.target.name}: accuracy vs latency (labels: parameter sparsity)"
    with _figure(path, title, footer) as ax:
        ax.set_xlabel("median latency (ms)")
        if not rows:
            ax.text(0.5, 0.5, "no accuracy metrics recorded for the candidates", ha="center",
                    transform=ax.transAxes)
            return str(path)
        ax.scatter([r["median_ms"] for r in rows], [r["metric"] for r in rows], color="#1f77b4", zorder=3,
                   label="candidates")
        front = _pareto_front(rows)
        ax.plot([r["median_ms"] for r in front], [r["metric"] for r in front], "-", color="#2ca02c",
                label="Pareto front")
        for r in rows:
            ax.annotate(f"{r['param_sparsity']:.0%}", (r["median_ms"], r["metric"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        knee = next((r for r in rows if r["knee"]), None)
        if knee:
            _star(ax, knee["median_ms"], knee["metric"], KNEE_COLOR, f"knee: {knee['candidate']}")
        ax.set_ylabel(rows[0]["primary"] or "accuracy")
    return str(path)


def plot_speedup_all(res, path: Path) -> str:
    """Speedup over the unpruned model vs sparsity, every target on one axis, knees starred."""
    footer = "each target measured separately, its candidates side by side; inference only, batch 1"
    with _figure(path, "speedup per target (stars: knee)", footer) as ax:
        for k, (name, tr) in enumerate(res.targets.items()):
            rows = target_rows(res, tr)
            color = f"C{k % 10}"
            ax.plot([r["param_sparsity"] * 100 for r in rows], [r["speedup"] for r in rows], "o-",
                    color=color, label=f"{name} ({tr.target.describe()})")
            if tr.knee.index is not None:
                r = rows[tr.knee.index]
                _star(ax, r["param_sparsity"] * 100, r["speedup"], color, mec="black")
        ax.axhline(1.0, color="gray", ls="--", lw=0.8)
        ax.set_xlabel(SPARSITY_LABEL)
        ax.set_ylabel("speedup over unpruned (median latency ratio)")
    return str(path)
