"""The field check: one command, run on the device itself, that exercises every TensorRT path edgeprune
uses and writes one JSON report to attach to a bug report.

    python3 edgeprune-agent.pyz field-check --out report.json     # on the device
    edgeprune field-check --host nvidia@jetson --out report.json  # from the host, over SSH

Checks, in order: the agent and its Python; the JetPack facts (L4T, JetPack, power mode, clocks); the
CUDA path in use (pycuda or libcudart) with a host->device->host round trip; TensorRT's version; then
engines from the shipped model (``field_model``) built and run at fp32, fp16, int8 (calibrated on
synthetic inputs), on DLA where the device has DLA cores, and with ``trtexec`` (which must produce the
engine the Python builder made for the same key); and a session used from a second thread. Every
engine's output is compared with an exact numpy reference. A check that cannot run says why
("not_run": TensorRT is not installed); nothing is reported as passed that did not run.
Exit code: 0 all applicable checks passed, 1 a check failed, 3 incomplete (something needed is missing).
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

FORMAT, FORMAT_VERSION = "edgeprune-field-check", 1
EXIT_OK, EXIT_FAILED, EXIT_INCOMPLETE = 0, 1, 3
# max |engine - reference| as a fraction of max |reference| (fp16 ~1e-3; int8 on synthetic ranges is coarse)
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.15}
FAST_PROFILE = {"warmup_runs": 5, "warmup_s": 0.0, "min_runs": 30, "min_s": 0.3, "max_repeats": 1}
Emit = Callable[[Dict[str, Any]], None]


class _NotRun(Exception):
    """A check that could not run here (something it needs is missing); the message says what."""


def _check(report: dict, emit: Emit, name: str, fn: Callable[[], dict]) -> dict:
    t0 = time.perf_counter()
    try:
        rec = {"name": name, "status": "ok", **(fn() or {})}
    except _NotRun as exc:
        rec = {"name": name, "status": "not_run", "reason": str(exc)}
    except Exception as exc:  # a check's failure is its result, never the end of the field check
        rec = {"name": name, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
               "traceback": traceback.format_exc()[-1500:]}
    rec["seconds"] = round(time.perf_counter() - t0, 3)
    report["checks"].append(rec)
    emit({"event": "check", **{k: v for k, v in rec.items() if k != "traceback"}})
    return rec


def _compare(y: np.ndarray, ref: np.ndarray, precision: str) -> dict:
    err = float(np.max(np.abs(y.astype(np.float64) - ref)))
    rel = err / max(float(np.max(np.abs(ref))), 1e-12)
    if not np.isfinite(rel) or rel > TOLERANCE[precision]:
        raise AssertionError(f"{precision} output differs from the reference: max abs error {err:.4g} "
                             f"({rel:.2%} of the output range; allowed {TOLERANCE[precision]:.0%})")
    return {"max_abs_error": err, "relative_error": rel}


class FieldCheck:
    """One run of the field check in ``work`` (engines, calibration cache, logs stay there)."""

    def __init__(self, work: Path, emit: Emit, trtexec: bool = True) -> None:
        from edgeprune.devices import field_model

        self.work, self.emit, self.use_trtexec = Path(work), emit, trtexec
        self.model = field_model
        self.work.mkdir(parents=True, exist_ok=True)
        self.onnx = self.work / "field_check.onnx"
        from edgeprune.fileio import atomic_write_bytes

        atomic_write_bytes(self.onnx, field_model.onnx_bytes())
        self.x = field_model.example_input()
        self.ref = field_model.reference(self.x)
        self.trt_missing: Optional[str] = None
        self.cuda_missing: Optional[str] = None
        self.artifacts: dict = {}

    # --- facts -----------------------------------------------------------------------------------
    def jetpack(self, env: dict) -> dict:
        if not env.get("is_jetson"):
            raise _NotRun("not a Jetson (/etc/nv_tegra_release is missing): no L4T/JetPack facts")
        jet = env.get("jetson", {})
        rel = jet.get("release", {})
        return {"l4t": rel.get("l4t"), "jetpack": rel.get("jetpack"),
                "jetpack_package": rel.get("jetpack_package"),
                "jetpack_inferred": rel.get("jetpack_inferred"),
                "board": rel.get("board"), "power_mode": jet.get("nvpmodel", {}).get("mode_name"),
                "clocks_locked": jet.get("jetson_clocks", {}).get("locked")}

    def cuda(self) -> dict:
        from edgeprune.errors import MissingDependencyError
        from edgeprune.runtimes.cuda_runtime import NoCudaDeviceError, get_cuda

        try:
            api = get_cuda()
            name, cc = api.device_info(0)
        except (MissingDependencyError, NoCudaDeviceError) as exc:
            self.cuda_missing = str(exc)
            raise _NotRun(f"no CUDA here: {exc}") from None
        with api.current(0):  # a real round trip: proves the path can move bytes, not only load
            stream = api.stream_create()
            host = api.host_empty((1024,), np.float32)
            host[:] = np.arange(1024, dtype=np.float32)
            back = api.host_empty((1024,), np.float32)
            dev = api.malloc(host.nbytes)
            try:
                api.copy_htod_async(dev, host, stream)
                api.copy_dtoh_async(back, dev, stream)
                api.stream_synchronize(stream)
                ok = bool(np.array_equal(host, back))
            finally:
                api.free(dev)
                api.host_free(host)
                api.host_free(back)
                api.stream_destroy(stream)
        if not ok:
            raise AssertionError("bytes copied host->device->host came back different")
        return {"cuda_path": api.name, "gpu_name": name, "compute_capability": cc, **api.versions()}

    def tensorrt(self) -> dict:
        try:
            import tensorrt as trt
        except ImportError as exc:
            self.trt_missing = f"TensorRT is not installed ({exc}); on a Jetson it comes with JetPack " \
                               "(python3-libnvinfer)"
            raise _NotRun(self.trt_missing) from None
        from edgeprune.runtimes.tensorrt_backend import trt_logger

        cores = int(getattr(trt.Builder(trt_logger(trt)), "num_DLA_cores", 0) or 0)
        self.dla_cores = cores
        return {"tensorrt_version": trt.__version__, "dla_cores": cores}

    # --- engines ---------------------------------------------------------------------------------
    def _need_trt(self) -> None:
        if self.trt_missing:
            raise _NotRun(f"needs TensorRT: {self.trt_missing}")
        if self.cuda_missing:
            raise _NotRun(f"needs CUDA: {self.cuda_missing}")

    def engine(self, tag: str, precision: str, **options: Any) -> dict:
        from edgeprune.runtimes.tensorrt_backend import RUNTIME as rt

        self._need_trt()
        art = rt.compile(self.onnx, self.work / tag, precision=precision, **options)
        self.artifacts[tag] = art
        with rt.session(art) as sess:
            (y,) = sess.infer({"images": self.x})
            stats = sess.profile({"images": self.x}, **FAST_PROFILE)
        out = {"precision": art.precision, "builder": art.options.get("builder"),
               "engine": Path(art.path).name,
               "compile_s": art.meta.get("compile_s"), "cache_hit": art.meta.get("cache_hit"),
               "median_ms": stats.median_ms, "p90_ms": stats.p90_ms, "runs": stats.n,
               **_compare(y, self.ref, art.precision)}
        if art.meta.get("precision_note"):
            out["precision_note"] = art.meta["precision_note"]
        return out

    def int8(self) -> dict:
        self._need_trt()
        import tensorrt as trt

        calib = make_synthetic_calibrator(trt, self.model, batches=8)
        cache = self.work / "int8" / "calibration.cache"
        if cache.exists():
            cache.unlink()  # calibrate afresh: this check is about the calibration path itself
        return self.engine("int8", "int8", calibrator=calib, int8_calibration_cache=str(cache))

    def dla(self) -> dict:
        self._need_trt()
        if not getattr(self, "dla_cores", 0):
            raise _NotRun("this device has no DLA cores (TensorRT reports num_DLA_cores = 0)")
        return self.engine("dla", "fp16", dla_core=0, gpu_fallback=True)

    def trtexec(self) -> dict:
        from edgeprune.errors import MissingDependencyError
        from edgeprune.runtimes import trtexec as tx
        from edgeprune.runtimes.tensorrt_backend import RUNTIME as rt

        self._need_trt()
        if not self.use_trtexec:
            raise _NotRun("skipped on request (--no-trtexec)")
        try:
            exe = tx.find_trtexec()
        except MissingDependencyError as exc:
            raise _NotRun(str(exc)) from None
        out = self.engine("trtexec", "fp16", builder="trtexec")
        python_fp16 = self.artifacts.get("fp16")
        if python_fp16 is not None and Path(python_fp16.path).name != out["engine"]:
            raise AssertionError(f"trtexec and the Python builder keyed the same fp16 build differently: "
                                 f"{out['engine']} vs {Path(python_fp16.path).name}")
        run = tx.TrtexecRunOptions(warmup_ms=200, duration_s=1)
        stats = rt.profile_trtexec(self.artifacts["trtexec"], run)
        return {**out, "trtexec": exe, "trtexec_gpu_compute_median_ms": stats.median_ms,
                "same_key_as_python_builder": python_fp16 is not None}

    def threads(self) -> dict:
        from edgeprune.runtimes.tensorrt_backend import RUNTIME as rt

        self._need_trt()
        art = self.artifacts.get("fp16") or self.artifacts.get("fp32")
        if art is None:
            raise _NotRun("no engine was built (see the fp32/fp16 checks)")
        box: dict = {}
        sess = rt.session(art)

        def worker() -> None:
            try:
                box["y"] = sess.infer({"images": self.x})[0]
            except Exception as exc:  # reported below
                box["error"] = f"{type(exc).__name__}: {exc}"

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        sess.close()
        if "error" in box:
            raise AssertionError(f"a session opened on one thread failed on another: {box['error']}")
        return {"engine": Path(art.path).name, **_compare(box["y"], self.ref, art.precision)}


def make_synthetic_calibrator(trt, model, batches: int = 8):
    """An INT8 entropy calibrator over ``batches`` synthetic inputs (checks the path, not accuracy)."""
    from edgeprune.runtimes.cuda_runtime import get_cuda

    cuda = get_cuda()

    class Calib(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.i, self.dev, self.host = 0, None, None

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names):
            if self.i >= batches:
                return None
            if self.dev is None:  # called during the build, with the CUDA context current
                self.host = cuda.host_empty(model.INPUT_SHAPE, np.float32)
                self.dev = cuda.malloc(self.host.nbytes)
            self.host[...] = model.example_input(seed=self.i)
            stream = cuda.stream_create()
            cuda.copy_htod_async(self.dev, self.host, stream)
            cuda.stream_synchronize(stream)
            cuda.stream_destroy(stream)
            self.i += 1
            return [int(self.dev)]

        def read_calibration_cache(self):
            return None

        def write_calibration_cache(self, cache) -> None:
            return None  # the backend writes int8_calibration_cache itself

    return Calib()


def run_field_check(out: str, work: Optional[str] = None, emit: Optional[Emit] = None,
                    trtexec: bool = True) -> int:
    """Run every check, write the report to ``out`` (atomically) and return the exit code."""
    from edgeprune.devices import environment
    from edgeprune.devices.agent import agent_info, print_event
    from edgeprune.fileio import write_json

    emit = emit or print_event
    out_path = Path(out)
    fc = FieldCheck(Path(work) if work else out_path.parent / "field-check-work", emit, trtexec=trtexec)
    report: dict = {"format": FORMAT, "format_version": FORMAT_VERSION,
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "agent": agent_info(),
                              "checks": []}
    env = environment.collect(tegrastats_s=1.0, runtime="tensorrt")
    report["environment"] = env
    _check(report, emit, "jetpack", lambda: fc.jetpack(env))
    _check(report, emit, "cuda", fc.cuda)
    _check(report, emit, "tensorrt", fc.tensorrt)
    for tag, prec, opts in (("fp32", "fp32", {}), ("fp16", "fp16", {})):
        _check(report, emit, f"engine_{tag}", lambda p=prec, t=tag, o=opts: fc.engine(t, p, **o))
    _check(report, emit, "engine_int8_calibrated", fc.int8)
    _check(report, emit, "engine_dla", fc.dla)
    _check(report, emit, "trtexec", fc.trtexec)
    _check(report, emit, "session_from_another_thread", fc.threads)
    statuses = [c["status"] for c in report["checks"]]
    summary = {s: statuses.count(s) for s in ("ok", "failed", "not_run")}
    trt_ran = any(c["name"].startswith("engine_") and c["status"] == "ok" for c in report["checks"])
    if summary["failed"]:
        code, verdict = EXIT_FAILED, "failed: see the checks with status 'failed'"
    elif not trt_ran:
        reason = fc.trt_missing or fc.cuda_missing or "no engine was built"
        code, verdict = EXIT_INCOMPLETE, f"incomplete: TensorRT paths not exercised ({reason})"
    else:
        code, verdict = EXIT_OK, "ok: every applicable TensorRT path built, ran and matched the reference"
    report.update(summary=summary, verdict=verdict, exit_code=code)
    write_json(out_path, report)
    emit({"event": "field_check_done", "report": str(out_path), "verdict": verdict, **summary})
    return code


def main(argv: Optional[list] = None) -> int:
    """``field-check --out report.json [--work DIR] [--no-trtexec]`` (called by the agent)."""
    import argparse

    p = argparse.ArgumentParser(prog="edgeprune-agent field-check")
    p.add_argument("--out", default="field-check.json")
    p.add_argument("--work", default=None)
    p.add_argument("--no-trtexec", action="store_true")
    args = p.parse_args(argv)
    return run_field_check(args.out, args.work, trtexec=not args.no_trtexec)


def summary_lines(report: dict) -> list:
    """Human-readable lines of a report (the host prints them)."""
    lines = [f"{c['name']:<30} {c['status']:<8} "
             + (c.get("reason") or c.get("error") or json.dumps({k: v for k, v in c.items()
                                                                  if k not in ("name", "status", "seconds")},
                                                                 default=str)[:120])
             for c in report.get("checks", [])]
    return lines + [f"verdict: {report.get('verdict')}"]


if __name__ == "__main__":
    sys.exit(main())
