"""The runtime registry: adding a runtime means adding one module and one line here."""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass

from edgeprune.errors import EdgepruneError, MissingDependencyError


@dataclass(frozen=True)
class RuntimeEntry:
    """Where a runtime backend lives and what it needs."""

    name: str
    backend: str  # module inside edgeprune.runtimes that defines ``RUNTIME``
    sdk_module: str  # the SDK's import name
    distribution: str  # the SDK's pip distribution (for its version)
    extra: str  # the edgeprune extra that installs it


RUNTIMES: dict[str, RuntimeEntry] = {
    e.name: e
    for e in (
        RuntimeEntry("onnxruntime", "onnxruntime_backend", "onnxruntime", "onnxruntime", "onnxruntime"),
        RuntimeEntry("openvino", "openvino_backend", "openvino", "openvino", "openvino"),
        RuntimeEntry("opencv", "opencv_backend", "cv2", "opencv-python-headless", "opencv"),
        RuntimeEntry("tensorrt", "tensorrt_backend", "tensorrt", "tensorrt", "tensorrt"),
    )
}


def names() -> list[str]:
    """All registered runtime names, installed or not."""
    return list(RUNTIMES)


def sdk_version(name: str) -> str | None:
    """The installed SDK version of runtime ``name``, or None when it cannot be imported."""
    entry = _entry(name)
    try:
        mod = importlib.import_module(entry.sdk_module)
    except Exception:  # an SDK can fail to import for reasons other than ImportError
        return None
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            version = importlib.metadata.version(entry.distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
    return str(version)


def import_sdk(name: str):
    """The SDK module of runtime ``name``; ``MissingDependencyError`` naming the extra when it is absent.

    The one import guard of every backend: the package imports without any SDK, each backend asks
    here on first use."""
    entry = _entry(name)
    try:
        return importlib.import_module(entry.sdk_module)
    except ImportError:
        raise MissingDependencyError(entry.sdk_module, entry.extra) from None


def available() -> list[str]:
    """Names of the runtimes whose SDK imports here."""
    return [n for n in RUNTIMES if sdk_version(n) is not None]


def get(name: str):
    """The runtime backend ``name``; raises ``MissingDependencyError`` naming the extra if absent."""
    entry = _entry(name)
    if sdk_version(name) is None:
        raise MissingDependencyError(entry.sdk_module, entry.extra)
    module = importlib.import_module(f"edgeprune.runtimes.{entry.backend}")
    return module.RUNTIME


def _entry(name: str) -> RuntimeEntry:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise EdgepruneError(
            f"unknown runtime '{name}'; known runtimes: {', '.join(RUNTIMES)}"
        ) from None
