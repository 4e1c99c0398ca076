"""The tracing side of the pruning package (trace -> graph) imports without a circle, lazy imports
inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import edgeprune.pruning

PKG = Path(edgeprune.pruning.__file__).parent
TRACING = {"recorder", "tracer", "ops", "layers", "blocks", "reshapes", "shapes", "size_attrs", "state",
           "graph"}


def _imports() -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob("*.py")} - {"__init__"}
    deps: dict[str, set[str]] = {}
    for m in mods:
        found: set[str] = set()
        for node in ast.walk(ast.parse((PKG / f"{m}.py").read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "edgeprune.pruning":
                found |= {a.name for a in node.names if a.name in mods}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("edgeprune.pruning."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("edgeprune.pruning.")}
        deps[m] = found - {m}
    return deps


def test_no_import_circle_on_the_tracing_side() -> None:
    deps = {m: d & TRACING for m, d in _imports().items() if m in TRACING}
    assert deps["ops"] >= {"recorder", "layers"} and "ops" in deps["tracer"]  # the graph is read
    done: set[str] = set()

    def visit(m: str, path: list[str]) -> None:
        assert m not in path, " -> ".join(path + [m])
        if m in done:
            return
        for d in sorted(deps.get(m, ())):
            visit(d, path + [m])
        done.add(m)

    for m in sorted(deps):
        visit(m, [])
