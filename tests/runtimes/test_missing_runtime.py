"""A runtime that is not installed raises MissingDependencyError naming the extra."""

import sys

import pytest

from edgeprune.errors import MissingDependencyError
from edgeprune.runtimes import registry


@pytest.mark.parametrize(
    "name,module,extra",
    [
        ("onnxruntime", "onnxruntime", "onnxruntime"),
        ("openvino", "openvino", "openvino"),
        ("opencv", "cv2", "opencv"),
        ("tensorrt", "tensorrt", "tensorrt"),
    ],
)
def test_get_names_the_extra(monkeypatch, name, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependencyError, match=rf"pip install 'edgeprune\[{extra}\]'"):
        registry.get(name)


def test_backend_import_guards(monkeypatch):
    from edgeprune.runtimes import onnxruntime_backend, opencv_backend, openvino_backend

    for mod, fn, extra in (
        (onnxruntime_backend, "_ort", "onnxruntime"),
        (openvino_backend, "_ov", "openvino"),
        (opencv_backend, "_cv2", "opencv"),
    ):
        sdk = {"_ort": "onnxruntime", "_ov": "openvino", "_cv2": "cv2"}[fn]
        monkeypatch.setitem(sys.modules, sdk, None)
        with pytest.raises(MissingDependencyError) as err:
            getattr(mod, fn)()
        assert err.value.extra == extra


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
