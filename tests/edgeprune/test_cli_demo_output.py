"""``edgeprune demo`` prints one report path per line, never a Python dict."""

from __future__ import annotations

from edgeprune.cli.demo import _flat


def test_report_paths_are_flattened_to_lines():
    report = {"markdown": "s/report.md", "plots": {"all": {"speedup": "s/plots/speedup_all.png"},
                                                    "ort": {"latency": "s/plots/latency_ort.png"}}}
    lines = [f"report {k}: {v}" for k, v in _flat(report)]
    assert lines == ["report markdown: s/report.md", "report plots all speedup: s/plots/speedup_all.png",
                     "report plots ort latency: s/plots/latency_ort.png"]
    assert not any("{" in line for line in lines)
