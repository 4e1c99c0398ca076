"""The sensitivity table: one row per (group, rate), saved as CSV, JSON and a heat-map PNG."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_bytes, atomic_write_text, read_json, write_json


@dataclass
class SensitivityRow:
    """Result of pruning one group alone at one rate, evaluated without fine-tuning."""

    group: str
    rate: float
    channels: int  # the group's channels before pruning
    removed: int  # channels removed at this rate (after rounding)
    metric: float  # the evaluator's primary metric
    params_removed: int
    flops_removed: int
    metrics: dict[str, float] = field(default_factory=dict)  # every metric the evaluator returned
    seconds: float = 0.0  # wall time of this evaluation
    latency_saved: float = 0.0  # predicted latency saved on the targets, as a fraction (latency models)

    @classmethod
    def from_dict(cls, d: dict) -> SensitivityRow:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class SensitivityTable:
    """All rows of a sensitivity pass plus the unpruned baseline they are compared with."""

    rows: list[SensitivityRow]
    primary: str
    baseline: dict[str, float]  # metrics of the unpruned model
    params: int  # of the analysed model
    flops: int
    key: str = ""  # cache key (hash of weights, architecture, rates, criterion, round_to, evaluator)

    @property
    def baseline_metric(self) -> float:
        return float(self.baseline[self.primary])

    @property
    def groups(self) -> list[str]:
        """Group ids in table order."""
        return list(dict.fromkeys(r.group for r in self.rows))

    @property
    def rates(self) -> list[float]:
        return sorted({r.rate for r in self.rows})

    def row(self, group: str, rate: float) -> SensitivityRow:
        """The row of ``group`` at ``rate``."""
        for r in self.rows:
            if r.group == group and math.isclose(r.rate, rate):
                return r
        raise KeyError(f"no sensitivity row for group {group!r} at rate {rate}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "primary": self.primary, "baseline": self.baseline, "params": self.params,
            "flops": self.flops, "key": self.key, "rows": [asdict(r) for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: dict) -> SensitivityTable:
        try:
            rows = [SensitivityRow.from_dict(r) for r in d["rows"]]
            return cls(rows, d["primary"], d["baseline"], int(d["params"]), int(d["flops"]), d.get("key", ""))
        except (KeyError, TypeError) as exc:
            raise InvalidConfigError(f"malformed sensitivity table: missing or bad field {exc}") from exc

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> SensitivityTable:
        return cls.from_dict(json.loads(text))

    def to_csv(self) -> str:
        """CSV with one row per (group, rate); every metric gets its own column."""
        metric_names = sorted({k for r in self.rows for k in r.metrics})
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["group", "rate", "channels", "removed", self.primary, "params_removed",
                    "flops_removed", *[f"metric:{m}" for m in metric_names], "seconds"])
        for r in self.rows:
            w.writerow([r.group, r.rate, r.channels, r.removed, f"{r.metric:.6g}", r.params_removed,
                        r.flops_removed, *[f"{r.metrics.get(m, float('nan')):.6g}" for m in metric_names],
                        f"{r.seconds:.3f}"])
        return buf.getvalue()

    def save(self, out_dir: str | Path, plot: bool = True) -> dict[str, Path]:
        """Write ``sensitivity.csv``, ``sensitivity.json`` and (``plot``) ``sensitivity.png``, atomically."""
        out = Path(out_dir)
        paths = {
            "csv": atomic_write_text(out / "sensitivity.csv", self.to_csv()),
            "json": write_json(out / "sensitivity.json", self.to_dict()),
        }
        if plot and self.rows:
            paths["png"] = atomic_write_bytes(out / "sensitivity.png", self.plot_png())
        return paths

    @classmethod
    def load(cls, path: str | Path) -> SensitivityTable:
        """Read a table saved by ``save`` (the folder or the JSON file)."""
        path = Path(path)
        if path.is_dir():
            path = path / "sensitivity.json"
        return cls.from_dict(read_json(path))

    def plot_png(self) -> bytes:
        """Heat map of the primary metric per group (rows) x rate (columns), as PNG bytes."""
        import matplotlib

        matplotlib.use("Agg")  # no display on servers; must precede pyplot
        import matplotlib.pyplot as plt
        import numpy as np

        groups, rates = self.groups, self.rates
        grid = np.full((len(groups), len(rates)), np.nan)
        for r in self.rows:
            grid[groups.index(r.group), rates.index(r.rate)] = r.metric
        fig, ax = plt.subplots(figsize=(4.5 + 1.0 * len(rates), 1.5 + 0.22 * len(groups)))
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0,
                       vmax=max(self.baseline_metric, float(np.nanmax(grid)) if grid.size else 1.0))
        ax.set_xticks(range(len(rates)), [f"{x:g}" for x in rates])
        ax.set_yticks(range(len(groups)), groups, fontsize=6)
        ax.set_xlabel("rate (group pruned alone,\nno fine-tuning)")
        ax.set_title(f"{self.primary} per group (unpruned: {self.baseline_metric:.4g})", fontsize=9)
        fig.colorbar(im, ax=ax, label=self.primary)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return buf.getvalue()
