"""The selection rule on hand-made sensitivity tables (no model, no pruning needed)."""

from __future__ import annotations

import pytest

from edgeprune.errors import InvalidConfigError
from edgeprune.iterative.selection import SelectionConfig, select
from edgeprune.iterative.table import SensitivityRow, SensitivityTable


def _table(rows, baseline=0.5):
    """rows: (group, rate, metric, params_removed, flops_removed[, removed])."""
    out = []
    for r in rows:
        g, rate, metric, p, f = r[:5]
        removed = r[5] if len(r) > 5 else 4
        out.append(SensitivityRow(g, rate, 16, removed, metric, p, f, {"m": metric}))
    return SensitivityTable(out, "m", {"m": baseline}, params=10_000, flops=100_000)


def test_two_lists_merge_and_ineligible_rows():
    raw = SelectionConfig(k=1, n_params=2, n_flops=2, relative=False)
    table = _table([
        ("A", 0.25, 0.5, 100, 10), ("A", 0.5, 0.4, 200, 20),      # p: 50, 80   f: 5, 8
        ("B", 0.25, 0.5, 10, 1000), ("B", 0.5, 0.2, 20, 2000),    # p: 5, 4     f: 500, 400
        ("C", 0.25, 0.5, 120, 300), ("C", 0.5, 0.3, 240, 600),    # p: 60, 72   f: 150, 180
        ("D", 0.25, 0.5, 10**6, 10**6, 0),                         # removes no channel: ineligible
        ("D", 0.5, 0.0, 10**6, 10**6),                             # metric 0: score 0, never chosen
    ])
    assert select(table, raw) == {"A": 0.5, "C": 0.5, "B": 0.25}


def test_merge_conflict_takes_higher_normalised_score():
    cfg = SelectionConfig(k=1, n_params=1, n_flops=2, relative=False)
    e_rows = [("E", 0.25, 1.0, 100, 100), ("E", 0.5, 0.9, 150, 100)]  # p best 0.5 (135), f best 0.25 (100)
    # G dominates FLOPs, so E's FLOPs score normalises to 0.1 while its param score normalises to 1.
    t1 = _table([*e_rows, ("G", 0.25, 1.0, 1, 1000)], baseline=1.0)
    assert select(t1, cfg) == {"E": 0.5, "G": 0.25}
    # H dominates params instead (n_params=2 keeps E in the param list, normalised 135/10000).
    cfg2 = SelectionConfig(k=1, n_params=2, n_flops=1, relative=False)
    t2 = _table([*e_rows, ("H", 0.25, 1.0, 10_000, 1)], baseline=1.0)
    assert select(t2, cfg2) == {"H": 0.25, "E": 0.25}


def test_k_exponent_prefers_gentle_rate_and_ties_take_smaller_rate():
    cfg = SelectionConfig(n_params=1, n_flops=1)  # k = 20, relative to baseline 0.5
    table = _table([
        ("X", 0.25, 0.49, 300, 300),   # (0.98)^20 * 300 ~ 200
        ("X", 0.75, 0.25, 1000, 1000),  # (0.5)^20 * 1000 ~ 0.001
        ("Y", 0.25, 0.5, 50, 50), ("Y", 0.5, 0.5, 50, 50),  # equal scores: smaller rate
    ])
    assert select(table, cfg) == {"X": 0.25}
    assert select(table, SelectionConfig(n_params=2, n_flops=0)) == {"X": 0.25, "Y": 0.25}


def test_default_counts_six_by_params_five_by_flops():
    rows = [(f"g{i:02d}", 0.5, 0.5, (i + 1) * 10, (12 - i) * 10) for i in range(12)]
    chosen = select(_table(rows), SelectionConfig())
    assert set(chosen) == {f"g{i:02d}" for i in (11, 10, 9, 8, 7, 6, 0, 1, 2, 3, 4)}
    assert "g05" not in chosen and all(rate == 0.5 for rate in chosen.values())


@pytest.mark.parametrize("kwargs", [{"k": -1}, {"n_params": -2}, {"n_params": 0, "n_flops": 0},
                                    {"n_flops": 1.5}])
def test_invalid_config_names_the_field(kwargs):
    with pytest.raises(InvalidConfigError, match="selection"):
        SelectionConfig(**kwargs)


def test_table_round_trip_and_files(tmp_path):
    table = _table([("A", 0.25, 0.5, 100, 10), ("A", 0.5, 0.4, 200, 20), ("B", 0.25, 0.3, 5, 5)])
    paths = table.save(tmp_path)
    assert SensitivityTable.load(tmp_path) == table
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = paths["csv"].read_text().splitlines()
    assert lines[0].startswith("group,rate,channels,removed,m,params_removed,flops_removed")
    assert len(lines) == 4
