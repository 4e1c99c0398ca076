"""The accuracy side of the report: intervals, candidates that cannot be told apart, recovered picks.

Candidates evaluated with a bootstrap interval (``DetectionEvaluator(bootstrap=N)``) carry
``<metric>_low`` / ``<metric>_high``. Two candidates whose intervals overlap are reported as "cannot
be told apart on this validation set": the overlap test is conservative (a paired test on the same
images can separate a little more), and it needs nothing but the stored intervals.
"""

from __future__ import annotations

from edgeprune.evaluation.bootstrap import intervals_overlap


def interval_of(metrics: dict, primary: str | None) -> dict | None:
    """``{"low", "high"}`` of the primary metric, or None when it was not measured."""
    if not primary or f"{primary}_low" not in metrics or f"{primary}_high" not in metrics:
        return None
    return {"low": float(metrics[f"{primary}_low"]), "high": float(metrics[f"{primary}_high"])}


def metric_cell(value: float | None, interval: dict | None) -> str:
    """``0.2530 [0.2280, 0.2910]`` (or the point alone, or ``-``)."""
    if value is None:
        return "-"
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval['low']:.4f}, {interval['high']:.4f}]"


def accuracy_lines(res, tr) -> list[str]:
    """Markdown lines: which neighbouring candidates cannot be told apart, and the pick's recovery."""
    by_id = {c.id: c for c in res.candidates}
    cands = [by_id[i] for i in tr.knee.ids]
    ivs = [interval_of(c.metrics, c.primary) for c in cands]
    lines: list[str] = []
    if any(iv is not None for iv in ivs):
        same = [f"`{a.id}` and `{b.id}`" for a, b, ia, ib in zip(cands, cands[1:], ivs, ivs[1:])
                if ia is not None and ib is not None and intervals_overlap(ia, ib)]
        text = f"Accuracy: {cands[0].primary} [bootstrap interval over the validation images]. "
        text += ("Cannot be told apart (overlapping intervals): " + "; ".join(same) + "." if same
                 else "Every neighbouring pair of candidates is told apart (intervals do not overlap).")
        lines += [text, ""]
    rec = getattr(tr, "recovery", None)
    if rec:
        primary = cands[0].primary or "metric"
        before, after = rec["before"].get(primary), rec["after"].get(primary)
        ib, ia = interval_of(rec["before"], primary), interval_of(rec["after"], primary)
        text = (f"Recovery fine-tune of the pick: {primary} {metric_cell(before, ib)} -> "
                f"{metric_cell(after, ia)} (best at step {rec['best_step']}; {rec['stop_reason']})")
        gain = rec.get("gain")
        if gain:
            verdict = "a measurable gain" if gain["distinguishable"] else "not distinguishable from no change"
            text += (f"; paired difference {gain['point']:+.4f} [{gain['low']:+.4f}, {gain['high']:+.4f}]: "
                     f"{verdict}")
        lines += [text + ".", ""]
    return lines
