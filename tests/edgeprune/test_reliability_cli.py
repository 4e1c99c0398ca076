"""User-caused failures end in one line ``edgeprune: error: ...`` and a non-zero exit, never a traceback."""

from __future__ import annotations

import os

import pytest
from bundle_helpers import dark_box_onnx

from edgeprune.cli import main
from edgeprune.errors import InvalidConfigError
from edgeprune.runtimes import get
from edgeprune.runtimes.profiling import ProfileConfig


def _one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc != 0, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeprune: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture()
def onnx_file(tmp_path) -> str:
    return dark_box_onnx(tmp_path / "m.onnx")


def test_profile_workdir_that_is_a_file(capsys, tmp_path, onnx_file):
    (tmp_path / "afile").write_text("x")
    line = _one_line_error(capsys, ["profile", onnx_file, "--workdir", str(tmp_path / "afile")])
    assert "is a file" in line


def test_profile_infinite_min_seconds(capsys, onnx_file):
    line = _one_line_error(capsys, ["profile", onnx_file, "--min-seconds", "inf"])
    assert "min_s must be a finite number" in line


def test_json_to_unwritable_path(capsys, tmp_path, onnx_file):
    (tmp_path / "afile").write_text("x")
    line = _one_line_error(capsys, ["profile", onnx_file, "--min-runs", "1", "--min-seconds", "0",
                                    "--warmup-runs", "0", "--json", str(tmp_path / "afile" / "r.json")])
    assert "afile" in line


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"[" * 50000 + b"]" * 50000])
def test_binary_or_deeply_nested_config(capsys, tmp_path, content):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(content)
    for cmd in ("prune", "sweep"):
        line = _one_line_error(capsys, [cmd, str(cfg)])
        assert str(cfg) in line


def test_garbage_weights_in_a_prune_config(capsys, tmp_path):
    (tmp_path / "w.pt").write_bytes(os.urandom(300))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: {builtin: yolov7_tiny, num_classes: 5, weights: w.pt}\n"
                   "data: {train: val, val: val, img_size: 64}\nevaluator: {kind: fidelity}\n"
                   "finetune: {kind: distill, steps: 0}\ntargets: {iterations: 1}\nrun_dir: run\n")
    (tmp_path / "val").mkdir()
    line = _one_line_error(capsys, ["prune", str(cfg)])
    assert "w.pt" in line and "cannot be read as plain tensors" in line


def test_os_errors_become_one_line(capsys, monkeypatch, onnx_file):
    import edgeprune.cli.profile as profile_cmd

    def read_only(args):  # what a read-only run folder raises deep inside a command
        raise PermissionError(13, "Permission denied", "/runs/prune/run.json")

    monkeypatch.setattr(profile_cmd, "run", read_only)
    line = _one_line_error(capsys, ["profile", onnx_file])
    assert "Permission denied: /runs/prune/run.json" in line


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_run_folder(capsys, tmp_path, onnx_file):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        _one_line_error(capsys, ["profile", onnx_file, "--workdir", str(ro / "w")])
    finally:
        ro.chmod(0o700)


def test_compile_of_a_folder_missing_file_or_file_workdir(tmp_path, onnx_file):
    rt = get("onnxruntime")
    with pytest.raises(InvalidConfigError, match="is a folder"):
        rt.compile(tmp_path, tmp_path / "w")
    with pytest.raises(InvalidConfigError, match="not found"):
        rt.compile(tmp_path / "missing.onnx", tmp_path / "w")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InvalidConfigError, match="is a file"):
        rt.compile(onnx_file, tmp_path / "afile")


@pytest.mark.parametrize("text", ["{not json", "[" * 100000 + "]" * 100000, "[1, 2]"])
def test_corrupt_artifact_json(tmp_path, onnx_file, text):
    rt = get("onnxruntime")
    rt.compile(onnx_file, tmp_path / "w")
    (tmp_path / "w" / "artifact.json").write_text(text)
    with pytest.raises(InvalidConfigError, match="artifact.json"):
        rt.session(tmp_path / "w")


@pytest.mark.parametrize("field", ["min_s", "warmup_s", "min_runs"])
def test_profile_config_needs_finite_numbers(field):
    for bad in (float("inf"), float("nan"), "2", True):
        with pytest.raises(InvalidConfigError, match=field):
            ProfileConfig(**{field: bad})
