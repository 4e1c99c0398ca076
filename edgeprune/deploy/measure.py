"""Measuring all candidates of one target: locally side by side (``runtimes.compare``), or on a device.

The record of a target (``targets/<target>.json``) is current while its key (target settings,
profile config, candidate ONNX hashes) is unchanged; a rerun returns it without measuring.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from edgeprune.deploy.candidate_files import SweepCandidate, compile_cached
from edgeprune.deploy.targets import Target
from edgeprune.fileio import read_json, sha256_file, write_json
from edgeprune.runtimes import registry
from edgeprune.runtimes.compare import compare
from edgeprune.runtimes.onnx_info import filled_feeds
from edgeprune.runtimes.profiling import ProfileConfig


def measure_target(
    target: Target,
    cands: Sequence[SweepCandidate],
    out_dir: Path,
    config: ProfileConfig,
    img_size: tuple[int, int] | None,
    fresh: bool = False,
) -> dict:
    """Compile (cached) and profile all candidates on one local target together; returns the record."""
    key = {
        "target": target.measure_key(),
        "profile": asdict(config),
        "candidates": {c.id: sha256_file(c.onnx_path) for c in cands},
    }
    rec_path = out_dir / "targets" / f"{target.name}.json"
    if rec_path.exists() and not fresh:
        rec = read_json(rec_path)
        if rec.get("key") == key:
            return rec
    if target.remote:
        return _measure_remote(target, cands, key, rec_path, config)
    rt = registry.get(target.runtime)
    arts, compiled = {}, {}
    for c in cands:
        t0 = time.perf_counter()
        arts[c.id], built = compile_cached(rt, target, c, out_dir / "compiled" / target.name / c.id)
        compiled[c.id] = {"compiled_now": built, "seconds": time.perf_counter() - t0}
    sessions = {}
    try:
        for c in cands:
            sessions[c.id] = rt.session(arts[c.id])
        feeds = filled_feeds(next(iter(sessions.values())).inputs, img_size)
        result = compare(sessions, feeds, config)
    finally:
        for s in sessions.values():
            s.close()
    rec = {
        "key": key,
        "target": target.to_dict(),
        "runtime_version": rt.version(),
        "measured": "side by side in one interleaved pass (runtimes.compare)",
        "interleaved": {"batch": result.batch, "rotate": result.rotate},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "candidates": {
            c.id: {
                "artifact_dir": str(Path(arts[c.id].path).parent),
                "compile": compiled[c.id],
                "stats": result[c.id].to_dict(),
            }
            for c in cands
        },
    }
    write_json(rec_path, rec)
    return rec


def _measure_remote(target: Target, cands, key, rec_path: Path, config: ProfileConfig) -> dict:
    """Measure on a device through ``edgeprune.devices`` (the agent times candidates one by one)."""
    from edgeprune.devices.runner import profile_on_devices
    from edgeprune.errors import DeviceError

    prof = target.device_profile()  # the sweep config's threads and options reach the agent
    jobs = profile_on_devices(
        {c.id: c.onnx_path for c in cands}, [prof], rec_path.parent.parent / "devices" / target.name,
        hosts={prof.name: target.host} if target.host else None, profile_options=asdict(config),
    )
    job = jobs[prof.name]
    failed = {cid: r.get("error") for cid, r in job.results.items() if r.get("status") != "ok"}
    if job.error is not None or failed or set(job.results) != {c.id for c in cands}:
        raise DeviceError(f"target '{target.name}' on device '{prof.name}': "
                          f"{job.error or failed or 'results missing'}")
    first = next(iter(job.results.values()))
    rec = {
        "key": key, "target": target.to_dict(), "runtime_version": first.get("runtime_version"),
        "measured": "on the device by the edgeprune agent, one candidate after another",
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "candidates": {cid: {"stats": {**r["latency"], "env": r.get("environment", {})}}
                       for cid, r in job.results.items()},
    }
    write_json(rec_path, rec)
    return rec
