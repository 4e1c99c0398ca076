"""The import rules of docs/architecture.md, checked on the source (AST), not by convention."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOST_TORCH_MODULES = ("training", "evaluation", "data", "models", "pruning", "iterative", "deploy", "export",
                      "complexity", "forward")


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            mods.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods.add(node.module)
            mods.update(f"{node.module}.{a.name}" for a in node.names)
    return mods


def _sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_only_the_cli_imports_the_cli():
    offenders = [
        str(p.relative_to(ROOT)) for p in _sources("edgeprune")
        if "cli" not in p.relative_to(ROOT / "edgeprune").parts and p.name != "__main__.py"
        and any(m == "edgeprune.cli" or m.startswith("edgeprune.cli.") for m in _imports(p))
    ]
    assert offenders == []


@pytest.mark.parametrize("folder", ["runtimes", "devices"])
def test_device_side_imports_neither_torch_nor_host_modules(folder):
    bad = {}
    for p in _sources(folder):
        found = [m for m in _imports(p) if m.split(".")[0] == "torch"
                 or any(m.startswith(f"edgeprune.{h}") for h in HOST_TORCH_MODULES)]
        if found:
            bad[str(p.relative_to(ROOT))] = found
    assert bad == {}


# what the on-device agent zipapp carries of the top-level package (devices/pack.py TOP_LEVEL)
DEVICE_SIDE_TOP_LEVEL = ("edgeprune", "edgeprune.errors", "edgeprune.fileio", "edgeprune._lazy",
                         "edgeprune._version")


def _edgeprune_imports_outside_the_agent(paths: list[Path]) -> dict[str, list[str]]:
    bad = {}
    for p in paths:
        found = sorted(m for m in _imports(p) if m.split(".")[0] == "edgeprune"
                       and not m.startswith(("edgeprune.runtimes", "edgeprune.devices"))
                       and m not in DEVICE_SIDE_TOP_LEVEL
                       and not m.startswith(tuple(f"{t}." for t in DEVICE_SIDE_TOP_LEVEL[1:])))
        if found:
            bad[str(p)] = found
    return bad


def test_device_side_imports_only_what_the_agent_carries():
    # runtimes/, devices/ and the top-level modules they use: nothing else of edgeprune, and no torch
    paths = _sources("runtimes") + _sources("devices") + [ROOT / "edgeprune" / "fileio.py",
                                                          ROOT / "edgeprune" / "errors.py"]
    assert _edgeprune_imports_outside_the_agent(paths) == {}
    for p in paths[-2:]:
        assert not [m for m in _imports(p) if m.split(".")[0] == "torch"], p


def test_the_checks_see_a_violation(tmp_path):
    # the AST reader must recognise both import forms, or the tests above could never fail
    f = tmp_path / "m.py"
    f.write_text("import torch.nn\nfrom edgeprune.cli import prune\n")
    assert {"torch.nn", "edgeprune.cli", "edgeprune.cli.prune"} <= _imports(f)
    g = tmp_path / "g.py"
    g.write_text("from edgeprune.fileio import write_json\nfrom edgeprune.export import export_onnx\n")
    assert _edgeprune_imports_outside_the_agent([g]) == {str(g): ["edgeprune.export",
                                                               "edgeprune.export.export_onnx"]}
