"""Module-level lazy attributes (PEP 562), shared by the packages that must import cheaply.

Torch-free and stdlib-only: the on-device agent zipapp includes it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_getattr(package: str, attrs: dict[str, str], submodules: frozenset[str] | set[str] = frozenset()
                 ) -> Callable[[str], Any]:
    """A module ``__getattr__``: ``attrs`` maps a public name to the module defining it, and names in
    ``submodules`` import ``package.<name>``. A loaded value is cached in the package's globals."""

    def __getattr__(name: str) -> Any:
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        module = attrs.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
