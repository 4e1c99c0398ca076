"""``edgeprune profile`` on a tiny ONNX: prints a table, writes JSON; several runtimes side by side."""

import json

import pytest

from edgeprune.cli import main
from edgeprune.cli.profile import parse_options
from edgeprune.errors import InvalidConfigError
from edgeprune.runtimes import available

FAST = ["--min-runs", "5", "--min-seconds", "0", "--warmup-runs", "1"]


def profile_report(model, tmp_path, *options: str) -> dict:
    """Run ``edgeprune profile MODEL OPTIONS --json`` with few timed runs; the JSON report it wrote."""
    out = tmp_path / "r.json"
    assert main(["profile", str(model), *options, "--json", str(out), *FAST]) == 0
    return json.loads(out.read_text())


def test_profile_one_runtime_writes_json_and_table(tiny_onnx, tmp_path, capsys):
    path, _, _ = tiny_onnx
    report = profile_report(path, tmp_path, "--runtime", "onnxruntime", "--threads", "1",
                            "--workdir", str(tmp_path / "w"))
    text = capsys.readouterr().out
    assert "median ms" in text and "tiny:onnxruntime" in text and "CoV" in text
    (r,) = report["results"]
    assert r["runtime"] == "onnxruntime" and r["threads"] == 1 and r["precision"] == "fp32"
    assert r["stats"]["n"] >= 5 and r["stats"]["median_ms"] > 0 and r["compile_s"] >= 0
    assert report["interleaved"] is False and report["env"]["cpu_model"]
    assert (tmp_path / "w" / "0-tiny" / "onnxruntime" / "artifact.json").is_file()


@pytest.mark.skipif(not {"openvino", "opencv"} <= set(available()), reason="needs openvino and opencv")
def test_profile_several_runtimes_side_by_side(tiny_onnx, tmp_path, capsys):
    path, _, _ = tiny_onnx
    report = profile_report(path, tmp_path, "--runtime", "onnxruntime", "--runtime", "openvino",
                            "--runtime", "opencv", "--option", "opencv.engine=classic")
    assert [r["runtime"] for r in report["results"]] == ["onnxruntime", "openvino", "opencv"]
    assert report["interleaved"] is True
    assert report["ratio_to_first"]["tiny:onnxruntime"] == 1.0
    assert report["results"][2]["artifact"]["meta"]["engine"] == "classic"
    assert "interleaved side by side" in capsys.readouterr().out


def test_profile_errors_are_clean(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "missing.onnx"), *FAST]) == 1
    assert "model not found" in capsys.readouterr().err


def test_parse_options():
    assert parse_options(["opencv.engine=classic", "onnxruntime.inter_op_threads=2"]) == {
        "opencv": {"engine": "classic"},
        "onnxruntime": {"inter_op_threads": 2},
    }
    with pytest.raises(InvalidConfigError):
        parse_options(["engine=classic"])
