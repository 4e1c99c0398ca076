"""The package foundation: torch-free subpackages, the wheel layout, the CLI."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_runtimes_and_devices_import_without_torch():
    code = (
        "import sys, edgeprune.runtimes, edgeprune.devices, edgeprune.errors\n"
        "import edgeprune.runtimes.preprocess, edgeprune.runtimes.postprocess\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_runtimes_import_when_torch_is_impossible(tmp_path):
    # a 'torch' that raises on import: the torch-free packages must not even try
    (tmp_path / "torch.py").write_text("raise ImportError('torch is forbidden here')\n")
    code = "import edgeprune.runtimes, edgeprune.devices; print(edgeprune.runtimes.names())"
    env_path = f"{tmp_path}"
    out = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r}); {code}"],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "onnxruntime" in out.stdout


@pytest.mark.slow
def test_wheel_contains_mapped_packages(tmp_path):
    # build from a clean copy: a stale build/ folder in the checkout could leak old files into the wheel
    src = tmp_path / "src"
    skip = shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".ruff_cache",
        "demo_out",
    )
    shutil.copytree(ROOT, src, ignore=skip)
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
        check=True, capture_output=True,
    )
    wheels = list(out.glob("edgeprune-*.whl"))
    assert len(wheels) == 1
    names = set(zipfile.ZipFile(wheels[0]).namelist())
    for required in (
        "edgeprune/runtimes/__init__.py",
        "edgeprune/runtimes/registry.py",
        "edgeprune/runtimes/bundle.py",
        "edgeprune/devices/__init__.py",
        "edgeprune/devices/agent.py",
        "edgeprune/devices/profiles/local.yaml",
        "edgeprune/errors.py",
        "edgeprune/deploy/sweep.py",
        "edgeprune/models/weights/yolov7_tiny_synth.pt",
    ):
        assert required in names, required
    assert not any(n.startswith("runtimes/") or n.startswith("devices/") for n in names)


def test_cli_version_and_doctor():
    out = subprocess.run([sys.executable, "-m", "edgeprune", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("edgeprune ")
    out = subprocess.run([sys.executable, "-m", "edgeprune", "doctor"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "onnxruntime" in out.stdout and "cores:" in out.stdout and "torch:" in out.stdout
    # tensorrt is not installable here: doctor must say how to get it
    if "tensorrt     missing" in out.stdout:
        assert "edgeprune[tensorrt]" in out.stdout


def test_missing_runtime_raises_with_extra(monkeypatch):
    from edgeprune.errors import MissingDependencyError
    from edgeprune.runtimes import registry

    monkeypatch.setattr(registry, "sdk_version", lambda name: None)
    with pytest.raises(MissingDependencyError, match=r"edgeprune\[openvino\]"):
        registry.get("openvino")


def test_unknown_runtime_is_a_clear_error():
    from edgeprune.errors import EdgepruneError
    from edgeprune.runtimes import get

    with pytest.raises(EdgepruneError, match="unknown runtime 'tflite'"):
        get("tflite")
