"""A runtime that is not installed raises MissingDependencyError naming the extra."""

import sys

import pytest

from edgeprune.errors import MissingDependencyError
from edgeprune.runtimes import registry

# runtime, SDK module, extra: written out here, not read from the registry the code under test uses
SDKS = [
    ("onnxruntime", "onnxruntime", "onnxruntime"),
    ("openvino", "openvino", "openvino"),
    ("opencv", "cv2", "opencv"),
    ("tensorrt", "tensorrt", "tensorrt"),
]


@pytest.mark.parametrize("name,module,extra", SDKS)
def test_get_names_the_extra(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=rf"pip install 'edgeprune\[{extra}\]'"):
        registry.get(name)


@pytest.mark.parametrize("name,module,extra", SDKS)
def test_backend_import_guard_comes_from_the_registry(monkeypatch, tmp_path, tiny_onnx, name, module, extra):
    import importlib

    backend = importlib.import_module(f"edgeprune.runtimes.{registry.RUNTIMES[name].backend}").RUNTIME
    onnx = tiny_onnx[0]
    monkeypatch.setitem(sys.modules, module, None)
    for call in (backend.sdk, backend.version, lambda: backend.compile(onnx, tmp_path / "w")):
        with pytest.raises(MissingDependencyError) as err:
            call()
        assert err.value.extra == extra and f"edgeprune[{extra}]" in str(err.value)
    assert not (tmp_path / "w").exists(), "a missing SDK is found before anything is written"


def test_backends_import_without_their_sdk_and_without_torch(monkeypatch):
    import subprocess

    code = (
        "import sys\n"
        "for m in ('tensorrt', 'pycuda', 'torch'): sys.modules[m] = None\n"
        "import edgeprune.runtimes.tensorrt_backend, edgeprune.runtimes.trtexec\n"
        "import edgeprune.runtimes.benchmark\n"
        "import edgeprune.runtimes.onnxruntime_backend, edgeprune.runtimes.openvino_backend\n"
        "import edgeprune.runtimes.opencv_backend\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
