"""How well the per-target latency model predicts pruned candidates it has never seen.

    .venv/bin/python benchmarks/bench_latency_model.py [--size 256] [--threads 2] [--cache latency_cache]
        [--runtimes onnxruntime openvino opencv] [--json out/bench_latency_model.json]

The shipped demo YOLOv7-tiny (trained weights) is pruned into test candidates: uniformly at several
sparsities and with random per-group rates (``ep.plan(rates=...)``, round_to 8, seeded). For each
runtime installed, the latency model is built on that runtime (each conv profiled alone at its real
input size over a few channel counts, then the whole model unpruned and 50 % pruned for calibration),
the candidates are measured side by side, interleaved (``runtimes.compare``; ONNX Runtime without
spin-waiting), fp32, batch 1, inference only, and predicted from their ONNX files. Printed per runtime:
measured vs predicted ms per candidate, the median and max relative error, the Spearman rank
correlation, and the build time of the model (cached in ``--cache``: a rerun measures nothing again).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def candidates(size: int, out: Path, seed: int = 0) -> tuple[object, object, dict[str, str]]:
    """The demo model, its example input, and name -> ONNX path of every test candidate."""
    import torch

    import edgeprune as ep

    model = ep.models.demo_model().eval()
    x = torch.zeros(1, 3, size, size)
    paths = {}
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, dict]] = [("unpruned", {})]
    specs += [(f"uniform-{s:g}", {"sparsity": s}) for s in (0.2, 0.4, 0.6)]
    graph = ep.trace(copy.deepcopy(model), x)
    for k in range(4):
        rates = {g.id: float(rng.choice([0.0, 0.25, 0.5, 0.75])) for g in graph.prunable_groups}
        specs.append((f"random-{k}", {"rates": rates}))
    for name, kw in specs:
        m = copy.deepcopy(model)
        if kw:
            m = ep.apply(m, ep.plan(ep.trace(m, x), round_to=8, **kw))
        paths[name] = str(out / f"{name}.onnx")
        ep.export_onnx(m.eval(), x, paths[name], verify=False)
    return model, x, paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=Path("latency_cache"))
    ap.add_argument("--runtimes", nargs="+", default=None)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)

    from edgeprune import latency
    from edgeprune.deploy.predicted import anchored, calibration_text
    from edgeprune.deploy.targets import target_from_config
    from edgeprune.runtimes import available, compare, get

    runtimes = a.runtimes or [r for r in ("onnxruntime", "openvino", "opencv") if r in available()]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        model, x, paths = candidates(a.size, Path(tmp))
        for rt_name in runtimes:
            target = target_from_config({"runtime": rt_name, "threads": a.threads})
            t0 = time.perf_counter()
            lm = latency.build_latency_model(model, x, latency.LocalProfiler(target), cache_dir=a.cache,
                                             name=target.name)
            build_s = time.perf_counter() - t0
            rt = get(rt_name)
            arts = {n: rt.compile(p, Path(tmp) / rt_name / n, threads=a.threads, **target.options)
                    for n, p in paths.items()}
            sessions = {n: rt.session(art) for n, art in arts.items()}
            try:
                s0 = next(iter(sessions.values()))
                feeds = {s0.inputs[0].name: np.random.default_rng(0).random((1, 3, a.size, a.size),
                                                                            dtype=np.float32)}
                res = compare(sessions, feeds, {"min_runs": 40, "min_s": 1.5, "warmup_s": 0.3})
            finally:
                for s in sessions.values():
                    s.close()
            raw = {n: lm.predict_onnx(p) for n, p in paths.items()}
            meas = {n: res[n].median_ms for n in paths}
            pred, anchor = anchored(raw, meas, list(paths))  # as the sweep report does
            rest = [n for n in paths if n != anchor]
            acc = latency.accuracy([pred[n] for n in rest], [meas[n] for n in rest])
            acc_raw = latency.accuracy([raw[n] for n in paths], [meas[n] for n in paths])
            results[rt_name] = {"version": rt.version(), "build_s": build_s, "alpha": lm.alpha,
                                "fixed_ms": lm.fixed_ms, "beta": lm.beta, "accuracy": acc,
                                "accuracy_unanchored": acc_raw, "anchor": anchor,
                                "load_avg": os.getloadavg()[0],
                                "rows": {n: {"measured_ms": meas[n], "cov": res[n].cov,
                                             "predicted_ms": pred[n], "raw_predicted_ms": raw[n]}
                                         for n in paths}}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(results, indent=2))
    print(f"demo YOLOv7-tiny {a.size}x{a.size}, fp32, {a.threads} threads, batch 1, inference only; "
          "measured = median of interleaved runs (runtimes.compare); raw = latency model from the "
          "candidate's ONNX; predicted = raw anchored on the unpruned model measured in the same pass (as in "
          "the sweep report; errors over the other candidates)")
    for rt_name, r in results.items():
        acc = r["accuracy"]
        rho = "n/a" if acc["spearman"] is None else f"{acc['spearman']:.3f}"
        raw = r["accuracy_unanchored"]
        print(f"\n{rt_name} {r['version']}: model built in {r['build_s']:.0f} s (0 when cached); "
              f"{calibration_text(r)}; load avg {r['load_avg']:.2f}; anchored: median error "
              f"{acc['median_rel_error'] or 0:.1%}, max {acc['max_rel_error'] or 0:.1%}, Spearman {rho} "
              f"(over {acc['n']} candidates); raw: median error {raw['median_rel_error'] or 0:.1%}, "
              f"max {raw['max_rel_error'] or 0:.1%}")
        print("| candidate | measured ms (CoV) | raw predicted ms | predicted ms (anchored) | error |")
        print("|---|---|---|---|---|")
        for n, row in r["rows"].items():
            if row["predicted_ms"] is None:
                print(f"| {n} | {row['measured_ms']:.2f} ({row['cov']:.3f}) | - | - | - |")
                continue
            err = (row["predicted_ms"] - row["measured_ms"]) / row["measured_ms"]
            print(f"| {n} | {row['measured_ms']:.2f} ({row['cov']:.3f}) | {row['raw_predicted_ms']:.2f} "
                  f"| {row['predicted_ms']:.2f} | {'anchor' if n == r['anchor'] else f'{err:+.1%}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
