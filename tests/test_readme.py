"""Every ```python block in README.md runs as written, in a fresh folder, in its own interpreter.

Blocks are self-contained (a block never relies on an earlier one), so each runs alone; the README
keeps their sizes small so the whole file runs in about a minute. Paths, make targets and example
scripts the README names must exist.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block in README.md."""
    text = README.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in FENCE.finditer(text)]


BLOCKS = python_blocks()


def test_readme_has_python_blocks():
    assert len(BLOCKS) >= 5  # the API, your data (4 kinds) and the walk-through to a bundle


@pytest.mark.slow
@pytest.mark.parametrize("line,code", BLOCKS, ids=[f"README.md:{ln}" for ln, _ in BLOCKS])
def test_readme_python_block_runs(line, code, tmp_path):
    script = tmp_path / "block.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)  # as a user would run it: only the installed package
    res = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=1800)  # a hang guard, generous for loaded machines
    tail = "\n".join((res.stdout + res.stderr).splitlines()[-40:])
    assert res.returncode == 0, f"README.md block at line {line} failed:\n{tail}"


def test_readme_names_files_and_targets_that_exist():
    text = README.read_text(encoding="utf-8")
    top = "examples|benchmarks|edgeprune|runtimes|devices|docs|tests"
    named = re.findall(rf"(?<![\w/.-])((?:{top})/[\w./-]*\w\.\w+)", text)
    for path in sorted(set(named)):
        assert (ROOT / path).exists(), f"README names {path}, which does not exist"
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for target in set(re.findall(r"\bmake (\w+)", text)):
        assert target in targets, f"README says `make {target}` but the Makefile has no such target"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_examples_answer_help(script):
    res = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--help"], capture_output=True,
                         text=True, timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and ("usage" in out.lower() or "python examples/" in out), out[-2000:]
