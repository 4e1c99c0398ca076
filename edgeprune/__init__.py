"""edgeprune: prune CNN detectors safely, then profile and pick per edge target.

The top level is lazy: ``import edgeprune.runtimes`` and ``import edgeprune.devices`` must not
import torch, so the torch-based API is loaded on first attribute access.
"""

from __future__ import annotations

from edgeprune._lazy import lazy_getattr
from edgeprune._version import __version__
from edgeprune.errors import (  # noqa: F401  (re-exported)
    EdgepruneError,
    MissingDependencyError,
    UnsupportedOperationError,
)

# public name -> module that defines it (imported on first use)
_LAZY_ATTRS: dict[str, str] = {
    # pruning core
    "trace": "edgeprune.pruning",
    "plan": "edgeprune.pruning",
    "apply": "edgeprune.pruning",
    "prune": "edgeprune.pruning",
    "Graph": "edgeprune.pruning",
    "PruningPlan": "edgeprune.pruning",
    "count_params": "edgeprune.complexity",
    "count_flops": "edgeprune.complexity",
    # export
    "export_onnx": "edgeprune.export",
    # iterative pruning
    "sensitivity": "edgeprune.iterative",
    "iterative_prune": "edgeprune.iterative",
    # sweep
    "sweep": "edgeprune.deploy",
}
_LAZY_MODULES = {
    "models", "data", "evaluation", "training", "pruning", "iterative", "deploy",
    "runtimes", "devices", "errors", "export", "complexity",
}

__all__ = ["__version__", "EdgepruneError", *sorted(_LAZY_ATTRS), *sorted(_LAZY_MODULES)]


__getattr__ = lazy_getattr("edgeprune", _LAZY_ATTRS, _LAZY_MODULES)
