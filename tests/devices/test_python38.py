"""The torch-free side (runtimes/, devices/, the agent zipapp) must run on Python 3.8 (JetPack 5).

Three guards: an AST scan for what static checkers miss (subscripted builtins or collections.abc
classes evaluated at import, 3.9+ methods), vermin's minimum-version analysis, and, where a Python
3.8 interpreter exists on this machine, the agent zipapp itself run and every module imported under it.
"""

from __future__ import annotations

import ast
import glob
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgeprune.devices.pack import TOP_LEVEL

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(
    [*ROOT.glob("runtimes/**/*.py"), *ROOT.glob("devices/**/*.py")]
    + [ROOT / "edgeprune" / n for n in TOP_LEVEL]  # the top-level modules the agent zipapp carries
)
GENERIC_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "type"}
ABC_NAMES = {"Mapping", "MutableMapping", "Sequence", "MutableSequence", "Iterable", "Iterator", "Callable",
             "Set", "MutableSet", "Collection", "Container", "Generator", "AsyncIterator", "Awaitable"}
METHODS_39 = {"removeprefix", "removesuffix", "is_relative_to", "with_stem", "randbytes"}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (not evaluated under ``from __future__ import annotations``)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        anns = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            anns = [x.annotation for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x]
            anns.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            anns = [node.annotation]
        for ann in anns:
            if ann is not None:
                skip.update(id(n) for n in ast.walk(ann))
    return skip


def py39_only_constructs(path: Path) -> list[str]:
    """Lines of ``path`` that evaluate 3.9+ syntax or call 3.9+ methods at run time."""
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    future = "from __future__ import annotations" in text
    abc_imported = {
        a.asname or a.name for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module == "collections.abc" for a in n.names
    }
    skip = _annotation_nodes(tree) if future else set()
    bad = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            name = node.value.id
            if name in GENERIC_BUILTINS or (name in abc_imported and name in ABC_NAMES):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}[...] evaluated at run time")
        if isinstance(node, ast.Attribute) and node.attr in METHODS_39:
            bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}() needs Python 3.9")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in skip:
            if any(isinstance(s, ast.Name) and s.id in ("None", "str", "int", "float") for s in (node.left,
                                                                                               node.right)):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: X | Y type evaluated at run time")
    return bad


def test_scan_catches_the_constructs_that_break_python_38(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from __future__ import annotations\nfrom collections.abc import Sequence\n"
        "from typing import Callable\nEmit = Callable[[dict[str, int]], None]\nSeq = Sequence[int]\n"
        "name = 'a.b'.removesuffix('.b')\n"
        "def f(x: dict[str, int], y: Sequence[int]) -> list[int]:\n"
        "    z: tuple[int, ...] = ()\n    return []\n"
    )
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        found = py39_only_constructs(sample)
    finally:
        ROOT = saved
    assert len(found) == 3, found  # dict[...] in the alias, Sequence[...] alias, removesuffix; annotations ok
    assert any(":4: dict[...]" in f for f in found) and any("removesuffix" in f for f in found)


def test_torch_free_sources_use_nothing_newer_than_python_38():
    bad = [line for path in SOURCES for line in py39_only_constructs(path)]
    assert not bad, "\n".join(bad)


@pytest.mark.skipif(shutil.which("vermin") is None and not Path(sys.executable).with_name("vermin").exists(),
                    reason="vermin is not installed (pip install -c constraints.txt -e '.[dev]')")
def test_vermin_reports_python_38_as_enough():
    exe = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    out = subprocess.run([exe, "-t=3.8-", "--no-tips", "--violations", "runtimes", "devices"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-1000:]


def python38() -> str | None:
    """A Python 3.8 interpreter on this machine, if any (EDGEPRUNE_PYTHON38, PATH, pyenv)."""
    cands = [os.environ.get("EDGEPRUNE_PYTHON38")]
    cands += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    cands.append(shutil.which("python3.8"))  # last: may be a pyenv shim that refuses to run
    for c in cands:
        if not c or not os.access(c, os.X_OK):
            continue
        try:
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 8))"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            continue
        if out.stdout.strip() == "True":
            return c
    return None


PY38 = python38()
needs_py38 = pytest.mark.skipif(PY38 is None,
                                reason="no Python 3.8 interpreter here (set EDGEPRUNE_PYTHON38)")
# modules a bare interpreter may lack; the device has them (numpy) or the code imports them lazily
THIRD_PARTY = ("numpy", "yaml", "onnx", "onnxruntime", "openvino", "cv2", "tensorrt", "pycuda", "tqdm")


@needs_py38
def test_agent_zipapp_runs_under_python_38(agent_pyz, tmp_path):
    out = subprocess.run([PY38, str(agent_pyz), "version"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["python"].startswith("3.8.")
    modules = [n[:-3].replace("/", ".") for n in zipfile.ZipFile(agent_pyz).namelist()
               if n.startswith("edgeprune/") and n.endswith(".py")]
    modules = [m[: -len(".__init__")] if m.endswith(".__init__") else m for m in modules]
    script = (
        "import importlib, json, sys\nsys.path.insert(0, sys.argv[1])\nout = {}\n"
        "for m in json.loads(sys.argv[2]):\n"
        "    try:\n        importlib.import_module(m); out[m] = 'ok'\n"
        "    except ModuleNotFoundError as e:\n        out[m] = 'missing:' + str(e.name)\n"
        "    except Exception as e:\n        out[m] = type(e).__name__ + ': ' + str(e)\n"
        "print(json.dumps(out))\n"
    )
    res = subprocess.run([PY38, "-c", script, str(agent_pyz), json.dumps(modules)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    missing_ok = {m for m, s in status.items()
                  if s.startswith("missing:") and s.split(":")[1].split(".")[0] in THIRD_PARTY}
    broken = {m: s for m, s in status.items() if s != "ok" and m not in missing_ok}
    assert not broken, broken
    assert status["edgeprune.devices.agent"] == "ok" and status["edgeprune.devices.protocol"] == "ok"
