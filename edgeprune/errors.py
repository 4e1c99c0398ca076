"""Errors raised by edgeprune. Every error a user can cause derives from ``EdgepruneError``.

This module imports nothing heavy: the torch-free ``runtimes`` and ``devices`` packages use it.
"""

from __future__ import annotations


class EdgepruneError(Exception):
    """Root of every error edgeprune raises on purpose."""


class InvalidModelError(EdgepruneError):
    """The model given cannot be used (wrong type, wrong inputs, broken forward)."""


class UnsupportedOperationError(EdgepruneError):
    """An op touches the channel axis in a way edgeprune does not understand.

    Raised instead of pruning silently wrong. ``op`` names the operation, ``module`` the module path.
    """

    def __init__(self, op: str, module: str | None = None, detail: str = "") -> None:
        self.op = op
        self.module = module
        where = f" in module '{module}'" if module else ""
        msg = f"unsupported operation '{op}'{where}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class InvalidPlanError(EdgepruneError):
    """A pruning plan does not fit the model, or its JSON is malformed."""


class InvalidConfigError(EdgepruneError):
    """A configuration file or argument is invalid; the message names the field."""


class InvalidDataError(EdgepruneError):
    """A dataset, image or label file is missing or malformed."""


class MissingDependencyError(EdgepruneError):
    """An optional runtime or library is not installed. The message names the extra to install."""

    def __init__(self, package: str, extra: str | None = None, detail: str = "") -> None:
        self.package = package
        self.extra = extra
        msg = f"'{package}' is not installed"
        if extra:
            msg += f"; install it with: pip install 'edgeprune[{extra}]'"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class ExportError(EdgepruneError):
    """ONNX export failed, or the exported model does not match the PyTorch model."""


class CompileError(EdgepruneError):
    """A runtime failed to compile (build) a model."""


class UnsupportedPrecisionError(CompileError):
    """A runtime or device cannot run the requested precision (raised instead of silently using another)."""


class InvalidInputError(EdgepruneError):
    """Inference inputs do not match the model: a missing or extra name, a wrong shape or dtype."""


class IncompatibleArtifactError(EdgepruneError):
    """A compiled artifact (e.g. a TensorRT engine) was built for another runtime version or device."""


class BundleError(EdgepruneError):
    """A bundle is malformed, incomplete, or a file's hash does not match its manifest."""


class DeviceError(EdgepruneError):
    """A device profile is invalid, or a job on a device failed."""


class DeviceUnreachableError(DeviceError):
    """A remote device could not be reached after the configured retries."""


class ClusterError(EdgepruneError):
    """A compute cluster (Ray) cannot be reached, or lost a task beyond its retries."""


class ProtocolError(DeviceError):
    """A job manifest is malformed, tampered with, or of an unknown protocol version."""


class PruneVerificationError(EdgepruneError):
    """Removing channels with zero contribution changed the model's outputs on the example input:
    the forward reads channel counts in a way the trace did not see. The model is left unchanged."""


class RunLockedError(EdgepruneError):
    """Another process is using this run folder (it holds the folder's lock)."""
