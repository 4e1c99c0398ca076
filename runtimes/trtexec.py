"""The ``trtexec`` path: build its command from the same options as the Python builder, run it, and
parse its performance summary from TensorRT 8.x and 10.x logs. Needs no TensorRT Python package.

Log formats handled (the "[date] [I] " prefix is optional):
  8.4:  ``Latency: min = 7.9 ms, max = 8.1 ms, mean = 7.96 ms, median = 7.95 ms, percentile(99%) = 8.08 ms``
  8.5, 8.6+ / 10.x: the same with ``percentile(90%)``, ``(95%)`` and ``(99%)``; banner ``[TensorRT v100300]``.
Also some printed forms drop the ``=`` ("max 6.19 ms"); both parse.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeprune.errors import CompileError, InvalidConfigError, MissingDependencyError
from edgeprune.runtimes.profiling import LatencyStats
from edgeprune.runtimes.tensorrt_options import TrtBuildOptions, parse_version

METRICS = {
    "Latency": "latency",
    "End-to-End Host Latency": "end_to_end",
    "Enqueue Time": "enqueue",
    "H2D Latency": "h2d",
    "GPU Compute Time": "gpu_compute",
    "D2H Latency": "d2h",
}
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*([0-9.eE+-]+)\s*ms")
_LINE = re.compile(r"^(?:\[[^\]]*\]\s*)*(?:\[[IWEV]\]\s*)?(?P<name>[A-Za-z][A-Za-z0-9 -]*?):\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class TrtexecRunOptions:
    """Timing settings passed to trtexec (its own defaults: 200 ms warm-up, 3 s, 10 iterations)."""

    warmup_ms: int = 500
    duration_s: float = 3.0
    iterations: int = 100
    avg_runs: int = 10
    no_data_transfers: bool = False
    use_cuda_graph: bool = False
    use_spin_wait: bool = True
    export_times: str | None = None  # path of per-iteration timings JSON


def _mib(options: TrtBuildOptions, version: tuple[int, ...]) -> str:
    # --workspace was replaced by --memPoolSize in 8.4 and removed in 10.x (units: MiB; 10.x takes a suffix)
    if version >= (10,):
        return f"--memPoolSize=workspace:{int(options.workspace_mib)}M"
    if version >= (8, 4):
        return f"--memPoolSize=workspace:{int(options.workspace_mib)}"
    return f"--workspace={int(options.workspace_mib)}"


def build_command(
    trt_version: str,
    onnx: str | os.PathLike | None = None,
    engine: str | os.PathLike | None = None,
    build: TrtBuildOptions | None = None,
    run: TrtexecRunOptions | None = None,
    build_only: bool = False,
    executable: str = "trtexec",
) -> list[str]:
    """A trtexec argv. ``onnx`` + ``engine`` builds and saves; ``engine`` alone loads and times it."""
    v = parse_version(trt_version)
    cmd = [executable]
    if onnx is not None:
        b = build or TrtBuildOptions()
        cmd += [f"--onnx={onnx}"]
        if engine is not None:
            cmd += [f"--saveEngine={engine}"]
        if b.precision == "fp16":
            cmd += ["--fp16"]
        elif b.precision == "int8":
            cmd += ["--int8", "--fp16"]  # fp16 fallback for layers without int8 kernels, as trtexec users do
            if b.int8_calibration_cache:
                cmd += [f"--calib={b.int8_calibration_cache}"]
        cmd += [_mib(b, v)]
        if b.timing_cache:
            cmd += [f"--timingCacheFile={b.timing_cache}"]
        if b.dla_core is not None:
            cmd += [f"--useDLACore={int(b.dla_core)}"]
            if b.gpu_fallback:
                cmd += ["--allowGPUFallback"]
        if b.builder_optimization_level is not None and v >= (8, 6):
            cmd += [f"--builderOptimizationLevel={b.builder_optimization_level}"]
        if b.shapes:
            cmd += ["--shapes=" + ",".join(f"{k}:{'x'.join(str(d) for d in s)}" for k, s in b.shapes.items())]
    elif engine is not None:
        cmd += [f"--loadEngine={engine}"]
        if build is not None and build.dla_core is not None:
            cmd += [f"--useDLACore={int(build.dla_core)}"]
    else:
        raise InvalidConfigError("trtexec needs an ONNX file to build or an engine to load")
    if build_only:
        cmd += ["--skipInference" if v >= (8, 6) else "--buildOnly"]
        return cmd
    r = run or TrtexecRunOptions()
    cmd += [
        f"--warmUp={int(r.warmup_ms)}",
        f"--duration={r.duration_s:g}",
        f"--iterations={int(r.iterations)}",
        f"--avgRuns={int(r.avg_runs)}",
    ]
    if v >= (8, 6):
        cmd += ["--percentile=90,95,99"]
    if r.no_data_transfers:
        cmd += ["--noDataTransfers"]
    if r.use_cuda_graph:
        cmd += ["--useCudaGraph"]
    if r.use_spin_wait:
        cmd += ["--useSpinWait"]
    if r.export_times:
        cmd += [f"--exportTimes={r.export_times}"]
    return cmd


def parse_log(text: str) -> dict[str, Any]:
    """The performance summary of a trtexec log: per metric {min, max, mean, median, p90, p95, p99} (ms),
    throughput_qps, version, passed; only the summary section is read when present."""
    out: dict[str, Any] = {"version": None, "passed": None, "throughput_qps": None}
    m = re.search(r"\[TensorRT v(\d+)\]", text)
    if m:
        out["version"] = ".".join(str(p) for p in parse_version("v" + m.group(1)))
    else:
        m = re.search(r"TensorRT version:\s*([\d.]+)", text)
        out["version"] = m.group(1) if m else None
    if "&&&& PASSED" in text:
        out["passed"] = True
    elif "&&&& FAILED" in text:
        out["passed"] = False
    start = text.rfind("=== Performance summary ===")
    section = text[start:] if start >= 0 else text
    for line in section.splitlines():
        lm = _LINE.match(line.strip())
        if not lm:
            continue
        name, rest = lm.group("name").strip(), lm.group("rest")
        if name == "Throughput":
            q = re.match(r"([0-9.eE+-]+)\s*qps", rest)
            out["throughput_qps"] = float(q.group(1)) if q else None
        elif name in ("Total Host Walltime", "Total GPU Compute Time"):
            s = re.match(r"([0-9.eE+-]+)\s*s", rest)
            out[name.lower().replace(" ", "_") + "_s"] = float(s.group(1)) if s else None
        elif name in METRICS:
            stats = {}
            for sm in _STAT.finditer(rest):
                key = "p" + format(float(sm.group(2)), "g") if sm.group(2) else sm.group(1)
                stats[key] = float(sm.group(3))
            out[METRICS[name]] = stats
    m = re.search(r"coefficient of variance(?: \(CoV\))?\s*=\s*([0-9.]+)%", section)
    out["gpu_compute_cov"] = float(m.group(1)) / 100.0 if m else None
    if "latency" not in out and "gpu_compute" not in out:
        raise CompileError("no performance summary found in the trtexec log")
    return out


def parse_times(path_or_text: str | os.PathLike) -> dict[str, list[float]]:
    """Per-iteration timings from ``--exportTimes`` JSON: {latency, gpu_compute, h2d, d2h} in ms."""
    p = Path(path_or_text)
    data = json.loads(p.read_text() if p.exists() else str(path_or_text))
    keys = {"latencyMs": "latency", "computeMs": "gpu_compute", "h2dMs": "h2d", "d2hMs": "d2h"}
    return {v: [float(it[k]) for it in data if k in it] for k, v in keys.items()}


def to_latency_stats(
    summary: dict, metric: str = "gpu_compute", samples_ms: list[float] | None = None, env: dict | None = None
) -> LatencyStats:
    """LatencyStats from raw samples when given, else from trtexec's summary (n unknown -> 0)."""
    if samples_ms:
        stats = LatencyStats.from_samples(samples_ms, includes="inference")
    else:
        s = summary.get(metric) or {}
        if "median" not in s:
            raise CompileError(f"trtexec summary has no '{metric}' statistics")
        cov = summary.get("gpu_compute_cov") if metric == "gpu_compute" else None
        nan = float("nan")  # trtexec does not print these; NaN says "unknown", never a made-up value
        stats = LatencyStats(
            median_ms=s["median"],
            mean_ms=s.get("mean", nan),
            p10_ms=nan,
            p90_ms=s.get("p90", nan),
            p99_ms=s.get("p99", nan),
            min_ms=s.get("min", nan),
            max_ms=s.get("max", nan),
            cov=cov if cov is not None else nan,
            n=0,
            includes="inference",
        )
    stats.env = {"measured_with": "trtexec", "metric": metric, **(env or {})}
    return stats


def find_trtexec() -> str:
    """The trtexec binary: PATH, then the JetPack / container locations."""
    for cand in (shutil.which("trtexec"), "/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise MissingDependencyError("trtexec", "tensorrt", "not on PATH nor in /usr/src/tensorrt/bin")


def run(cmd: list[str], log_path: str | os.PathLike | None = None, timeout_s: float | None = None) -> dict:
    """Run a trtexec command, keep its log, and return the parsed summary (raises on failure)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    log = proc.stdout + proc.stderr
    if log_path:
        from edgeprune.fileio import atomic_write_text

        atomic_write_text(log_path, log)
    if proc.returncode != 0:
        tail = "\n".join(log.strip().splitlines()[-15:])
        raise CompileError(f"trtexec failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    if "--skipInference" in cmd or "--buildOnly" in cmd:
        return {"passed": True, "log": str(log_path) if log_path else None}
    return parse_log(log)
