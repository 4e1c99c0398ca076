"""A plain-text table of metrics for logs and reports."""

from __future__ import annotations

from collections.abc import Mapping


def summarize(rows: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """Format ``{row name: {metric: value}}`` as an aligned text table (metrics in first-seen order)."""
    metrics: list[str] = []
    for values in rows.values():
        metrics += [m for m in values if m not in metrics]
    header = ["", *metrics]
    body = [[str(name), *(f"{values[m]:.{digits}f}" if m in values else "-" for m in metrics)]
            for name, values in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *body]]
    return "\n".join(lines)
