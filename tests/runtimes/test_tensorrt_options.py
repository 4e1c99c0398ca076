"""TensorRT logic that needs no GPU: versions, cache key, engine reuse/refusal, trtexec argv and logs."""

import json
from pathlib import Path

import pytest

from edgeprune.errors import IncompatibleArtifactError, InvalidConfigError, UnsupportedPrecisionError
from edgeprune.runtimes import tensorrt_options as to
from edgeprune.runtimes import trtexec

DATA = Path(__file__).parent / "data"


def fields(**over):
    opts = over.pop("options", to.TrtBuildOptions(precision=over.pop("precision", "fp16")))
    base = dict(onnx_sha256="a" * 64, tensorrt_version="8.5.2.2", gpu_name="Orin", compute_capability=(8, 7))
    base.update(over)
    return to.cache_key_fields(options=opts, **base)


def test_parse_version_forms():
    assert to.parse_version("8.5.2.2") == (8, 5, 2, 2)
    assert to.parse_version("v8502") == (8, 5, 2)
    assert to.parse_version("v100300") == (10, 3, 0)
    assert to.parse_version("10.3") == (10, 3)
    with pytest.raises(InvalidConfigError):
        to.parse_version("unknown")


def test_build_options_validation():
    with pytest.raises(UnsupportedPrecisionError):
        to.TrtBuildOptions(precision="fp8")
    with pytest.raises(InvalidConfigError, match="unknown options"):
        to.TrtBuildOptions.from_options("fp16", workspace=1)
    with pytest.raises(InvalidConfigError):
        to.TrtBuildOptions(workspace_mib=0)
    assert to.TrtBuildOptions.from_options("FP16", dla_core=0).dla_core == 0


def test_cache_key_changes_with_each_field():
    base = to.cache_key(fields())
    variants = [
        fields(onnx_sha256="b" * 64),
        fields(tensorrt_version="10.3.0"),
        fields(gpu_name="Xavier"),
        fields(compute_capability=(7, 2)),
        fields(precision="fp32"),
        fields(options=to.TrtBuildOptions(precision="fp16", workspace_mib=2048)),
        fields(options=to.TrtBuildOptions(precision="fp16", dla_core=0)),
        fields(options=to.TrtBuildOptions(precision="fp16", dla_core=0, gpu_fallback=False)),
        fields(options=to.TrtBuildOptions(precision="fp16", shapes={"images": (1, 3, 320, 320)})),
    ]
    keys = [to.cache_key(v) for v in variants]
    assert base not in keys and len(set(keys)) == len(keys)
    # the timing cache only speeds builds up: it does not change the engine's key
    same = fields(options=to.TrtBuildOptions(precision="fp16", timing_cache="/tmp/tc.cache"))
    assert to.cache_key(same) == base
    assert to.cache_key(fields()) == base  # stable
    assert fields()["compute_capability"] == "8.7"


def test_engine_reuse_and_mismatched_sidecar_rebuilds(tmp_path):
    f = fields()
    path, reusable = to.resolve_engine(tmp_path, f)
    assert not reusable and path.name == to.engine_filename(f) and path.name.startswith("model.fp16.")
    path.write_bytes(b"plan")
    assert not to.resolve_engine(tmp_path, f)[1]  # no sidecar: never trusted
    Path(str(path) + ".json").write_text(json.dumps(to.sidecar_for(f)))
    assert to.resolve_engine(tmp_path, f)[1]
    bad = to.sidecar_for({**f, "tensorrt_version": "8.4.1"})
    Path(str(path) + ".json").write_text(json.dumps(bad))
    assert not to.resolve_engine(tmp_path, f)[1]
    assert to.mismatched_fields(bad, f) == ["tensorrt_version"]


def test_loading_an_engine_from_another_trt_or_gpu_is_refused():
    built = to.sidecar_for(fields())
    to.check_loadable(built, fields())  # same: fine
    with pytest.raises(IncompatibleArtifactError, match="tensorrt_version: built '8.5.2.2', here '10.3.0'"):
        to.check_loadable(built, fields(tensorrt_version="10.3.0"), "m.engine")
    with pytest.raises(IncompatibleArtifactError, match="gpu_name"):
        to.check_loadable(built, fields(gpu_name="Xavier"))
    with pytest.raises(IncompatibleArtifactError, match="no key fields"):
        to.check_loadable({}, fields())


def test_build_command_trt10():
    b = to.TrtBuildOptions(precision="fp16", workspace_mib=512, timing_cache="tc.cache", dla_core=1)
    cmd = trtexec.build_command("10.3.0", "m.onnx", "m.engine", b, build_only=True)
    assert cmd[0] == "trtexec"
    for arg in (
        "--onnx=m.onnx",
        "--saveEngine=m.engine",
        "--fp16",
        "--memPoolSize=workspace:512M",
        "--timingCacheFile=tc.cache",
        "--useDLACore=1",
        "--allowGPUFallback",
        "--skipInference",
    ):
        assert arg in cmd
    assert not any(a.startswith("--workspace") for a in cmd)


def test_build_command_trt8_variants():
    b = to.TrtBuildOptions(precision="int8", workspace_mib=256, int8_calibration_cache="calib.cache")
    c85 = trtexec.build_command("8.5.2", "m.onnx", "m.engine", b, build_only=True)
    assert "--memPoolSize=workspace:256" in c85 and "--buildOnly" in c85
    assert "--int8" in c85 and "--calib=calib.cache" in c85
    c82 = trtexec.build_command("8.2.1", "m.onnx", "m.engine", b, build_only=True)
    assert "--workspace=256" in c82
    no_fallback = to.TrtBuildOptions(dla_core=0, gpu_fallback=False)
    assert "--allowGPUFallback" not in trtexec.build_command("8.5", "m.onnx", None, no_fallback)


def test_timing_command_from_run_options():
    run = trtexec.TrtexecRunOptions(
        warmup_ms=200,
        duration_s=5,
        iterations=50,
        avg_runs=20,
        no_data_transfers=True,
        use_cuda_graph=True,
        export_times="t.json",
    )
    cmd = trtexec.build_command("10.3", engine="m.engine", run=run)
    for arg in (
        "--loadEngine=m.engine",
        "--warmUp=200",
        "--duration=5",
        "--iterations=50",
        "--avgRuns=20",
        "--noDataTransfers",
        "--useCudaGraph",
        "--exportTimes=t.json",
        "--percentile=90,95,99",
    ):
        assert arg in cmd
    assert "--percentile=90,95,99" not in trtexec.build_command("8.5", engine="m.engine")
    with pytest.raises(InvalidConfigError):
        trtexec.build_command("10.3")


def test_parse_log_trt8_jetson():
    s = trtexec.parse_log((DATA / "trtexec_8.5_jetson.log").read_text())
    assert s["version"] == "8.5.2" and s["passed"] is True
    assert s["throughput_qps"] == pytest.approx(287.412)
    assert s["latency"] == {
        "min": 3.56201,
        "max": 4.98718,
        "mean": 3.62144,
        "median": 3.61279,
        "p90": 3.66211,
        "p95": 3.69287,
        "p99": 3.80127,
    }
    assert s["gpu_compute"]["median"] == pytest.approx(3.40820)
    assert s["h2d"]["mean"] == pytest.approx(0.18349) and s["d2h"]["p99"] == pytest.approx(0.02930)
    assert s["total_host_walltime_s"] == pytest.approx(3.00614)
    assert s["gpu_compute_cov"] is None
    st = trtexec.to_latency_stats(s, "gpu_compute")
    assert st.median_ms == pytest.approx(3.40820) and st.p99_ms == pytest.approx(3.59277) and st.n == 0
    assert st.p90_ms == pytest.approx(3.45581)  # TensorRT 8.5 prints 90/95/99 percentiles too


def test_parse_log_trt10():
    s = trtexec.parse_log((DATA / "trtexec_10.3.log").read_text())
    assert s["version"] == "10.3.0" and s["passed"] is True
    lat = s["latency"]
    assert (lat["p90"], lat["p95"], lat["p99"]) == (1.32861, 1.33789, 1.40894)
    assert s["gpu_compute"]["median"] == pytest.approx(1.10181)
    assert s["enqueue"]["max"] == pytest.approx(0.52246)
    assert s["gpu_compute_cov"] == pytest.approx(0.0421344)
    st = trtexec.to_latency_stats(s, "latency")
    assert st.p90_ms == pytest.approx(1.32861) and st.env["measured_with"] == "trtexec"


def test_parse_log_without_equals_and_failures():
    text = (
        "=== Performance summary ===\nThroughput: 169.35 qps\n"
        "GPU Compute Time: min = 3.17 ms, max 3.88 ms, mean 3.63 ms, median 3.71 ms, "
        "percentile(99%) 3.87 ms\n"
    )
    s = trtexec.parse_log(text)
    assert s["gpu_compute"] == {"min": 3.17, "max": 3.88, "mean": 3.63, "median": 3.71, "p99": 3.87}
    from edgeprune.errors import CompileError

    with pytest.raises(CompileError, match="no performance summary"):
        trtexec.parse_log("&&&& FAILED TensorRT.trtexec [TensorRT v8502]")


def test_parse_export_times():
    t = trtexec.parse_times(DATA / "trtexec_times.json")
    assert t["gpu_compute"] == [1.10, 1.12, 1.09] and t["latency"] == [1.31, 1.33, 1.29]
    st = trtexec.to_latency_stats({}, samples_ms=t["gpu_compute"])
    assert st.n == 3 and st.median_ms == pytest.approx(1.10)
