"""The rows every part of the sweep report shows: one per candidate and target, and how it was measured."""

from __future__ import annotations

from edgeprune.deploy.accuracy import interval_of


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


def candidates_from(tr) -> dict | None:
    """Which pruning run the target's candidates came from (None: candidates given directly)."""
    run = getattr(tr, "run_dir", None)
    if run is None:
        return None
    per = bool(getattr(tr, "per_target", False))
    return {"run": run, "per_target": per,
            "text": f"its own run `{run}` (per-target pruning with this target's latency model)" if per
            else f"run `{run}` (the same candidates for every target)"}


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
