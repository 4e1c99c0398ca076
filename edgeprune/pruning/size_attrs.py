"""Module attributes that hold channel counts: found by reading the module's source (which
``self.X`` its methods read), so a split size or slice bound can be updated after pruning."""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from typing import Any

from torch import nn

from edgeprune.pruning.recorder import Tracer


@functools.cache
def _attrs_read_outside_init(cls: type) -> frozenset[str]:
    """Names ``X`` of every ``self.X`` read in the methods of ``cls`` (and bases) except __init__."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass in (nn.Module, object):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name != "__init__":
                for node in ast.walk(fn):
                    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                            and node.value.id == "self":
                        names.add(node.attr)
    return frozenset(names)


def find_size_attr(tr: Tracer, value: Any) -> tuple[str, str] | str:
    """The unique attribute of the running module holding ``value`` and read by its methods
    (not only set in ``__init__``, so a coincidentally equal number is not taken); else a reason."""
    mod_name = tr.where
    module = tr.modules.get(mod_name, tr.model)
    used = _attrs_read_outside_init(type(module))
    found = []
    for k, v in vars(module).items():
        if k.startswith("_") or k == "training" or isinstance(v, bool) or k not in used:
            continue
        if isinstance(value, int) and isinstance(v, int) and v == value:
            found.append(k)
        elif isinstance(value, (list, tuple)) and isinstance(v, (list, tuple)) and list(v) == list(value):
            found.append(k)
    if len(found) == 1:
        return mod_name, found[0]
    if not found:
        return f"size {value!r} is a Python literal (no attribute of '{mod_name or 'model'}' holds it)"
    return f"size {value!r} is ambiguous: attributes {found} of '{mod_name or 'model'}' all hold it"
