"""Regenerate the README's measured figures on this machine and print them as markdown.

    python benchmarks/run_all.py                  # demo from scratch + pruning speed (~10 min idle, 2 cores)
    python benchmarks/run_all.py --reuse          # format an earlier run in --out without re-running it
    python benchmarks/run_all.py --skip-pruning   # only the demo tables

Runs ``edgeprune demo --fresh`` into ``--out`` (default ``benchmarks/out/demo``), then prints the
machine it ran on, the pruning table (params, GFLOPs, sparsity, mAP per candidate) and the latency
table (median ms and speedup per runtime, knee marked), then ``benchmarks/bench_pruning.py``.
Everything is also written to ``<out>/figures.md``.

Which figures depend on the machine: latencies and speedups always. The pruning path too: the
sensitivity scores are mAPs of models computed with this CPU's float kernels, so a tie broken
differently on another CPU selects other groups and so other sparsities. "Deterministic by seed"
holds on one machine, not across machines. Model sizes, the FLOPs of a given plan and the synthetic
data are identical everywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """One line naming the CPU, cores, memory and the software versions that shape the figures."""
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        info = Path("/proc/cpuinfo").read_text()
        cpu = next(ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name"))
        flag_line = next((ln for ln in info.splitlines() if ln.startswith("flags")), "")
        flags = "AVX-512" if "avx512f" in flag_line else "AVX2" if "avx2" in flag_line else ""
    except (OSError, StopIteration):
        pass
    mem = ""
    try:
        kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")))
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    import torch

    from edgeprune.runtimes import available, get

    versions = ", ".join(f"{n} {get(n).version()}" for n in sorted(available()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu} ({flags or 'no AVX2'}), {os.cpu_count()} cores{mem}; Python "
            f"{platform.python_version()}, torch {torch.__version__}; {versions}; "
            f"load average at the end {load:.1f}")


def pruning_table(report: dict) -> list[str]:
    """The README's table of candidates (from the sweep's report.json)."""
    cands = report["candidates"]
    base = cands[0]
    lines = ["| iteration | params (M) | GFLOPs | param sparsity | FLOPs sparsity | mAP50-95 | mAP50 |",
             "|---|---|---|---|---|---|---|"]
    for c in cands:
        flops_sp = 1 - c["flops"] / base["flops"] if c.get("flops") and base.get("flops") else 0.0
        m = c.get("metrics") or {}
        lines.append(f"| {c['id']} | {c['params'] / 1e6:.3f} | {c['flops'] / 1e9:.3f} | "
                     f"{c['param_sparsity']:.1%} | {flops_sp:.1%} | {m.get('mAP50-95', float('nan')):.3f} | "
                     f"{m.get('mAP50', float('nan')):.3f} |")
    return lines


def latency_table(report: dict) -> list[str]:
    """Median ms and speedup over unpruned per runtime; the knee in bold."""
    targets = report["targets"]
    names = list(targets)
    head = " | ".join(f"{n} {targets[n].get('runtime_version') or ''}".strip() for n in names)
    lines = [f"| candidate | {head} |", "|---|" + "---|" * len(names)]
    ids = [r["candidate"] for r in targets[names[0]]["rows"]]
    for k, cid in enumerate(ids):
        cells = []
        for n in names:
            r = targets[n]["rows"][k]
            text = f"{r['median_ms']:.2f} ms" + (f" ({r['speedup']:.2f}x)" if k else "")
            text += f" CoV {r['cov']:.2f}, n {r['n']}"
            cells.append(f"**{text} knee**" if r["knee"] else text)
        lines.append(f"| {cid} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "demo",
                    help="demo output folder (default benchmarks/out/demo)")
    ap.add_argument("--reuse", action="store_true", help="format the run already in --out (no demo run)")
    ap.add_argument("--skip-pruning", action="store_true", help="do not run benchmarks/bench_pruning.py")
    args = ap.parse_args(argv)
    out: list[str] = []
    if not args.reuse:
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "edgeprune", "demo", "--fresh", "--out", str(args.out)]
        print("running:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        out.append(f"`edgeprune demo --fresh`: {time.perf_counter() - t0:.0f} s wall")
    report_path = args.out / "sweep" / "report.json"
    if not report_path.is_file():
        sys.exit(f"no {report_path}: run without --reuse first")
    report = json.loads(report_path.read_text())
    out += ["", f"Machine: {machine()}", "", "Pruning candidates (mAP on the demo's validation images):", ""]
    out += pruning_table(report)
    out += ["", "Latency (fp32, inference only, median of interleaved runs; speedup over unpruned):", ""]
    out += latency_table(report)
    if not args.skip_pruning:
        res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_pruning.py")],
                             capture_output=True, text=True, check=True)
        out += ["", "Pruning speed (benchmarks/bench_pruning.py):", "", "```text", res.stdout.rstrip(), "```"]
    text = "\n".join(out) + "\n"
    print(text)
    (args.out / "figures.md").write_text(text, encoding="utf-8")
    print(f"written to {args.out / 'figures.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
