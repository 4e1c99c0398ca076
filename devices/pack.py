"""Build the on-device agent: one zipapp with edgeprune's torch-free parts and nothing else.

The archive holds ``edgeprune/__init__.py``, ``_lazy.py``, ``_version.py``, ``errors.py``,
``fileio.py`` and the ``runtimes`` and ``devices`` packages, copied from where they are installed,
plus a ``__main__`` that runs the agent.
It is a standard zipapp (``python -m zipapp`` format). The device's own Python runs it with its own
numpy and runtime SDK; nothing is pip-installed there. Files get a fixed timestamp so the same code
always packs to the same bytes (the same hash lets the host skip re-uploading an agent the device has).
"""

from __future__ import annotations

import ast
import os
import re
import zipfile
from pathlib import Path
from typing import Optional

from edgeprune.errors import DeviceError

MAIN = "import sys\nfrom edgeprune.devices.agent import main\n\nsys.exit(main())\n"
INTERPRETER = "/usr/bin/env python3"
_FIXED_DATE = (2010, 1, 1, 0, 0, 0)  # any constant; zip timestamps must be >= 1980
# the torch-free modules of the top-level package that runtimes/ and devices/ import
TOP_LEVEL = ("__init__.py", "_lazy.py", "_version.py", "errors.py", "fileio.py")


def agent_files() -> dict[str, Path]:
    """Archive name -> installed source file for everything the agent needs."""
    import edgeprune
    import edgeprune.devices
    import edgeprune.runtimes

    top = Path(edgeprune.__file__).resolve().parent
    files = {f"edgeprune/{n}": top / n for n in TOP_LEVEL}
    for pkg, name in ((edgeprune.runtimes, "runtimes"), (edgeprune.devices, "devices")):
        root = Path(next(iter(pkg.__path__))).resolve()
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if "__pycache__" in rel.parts or not path.is_file():
                continue
            if path.suffix == ".py" or (rel.parts[0] == "profiles" and path.suffix in (".yaml", ".yml")):
                files[f"edgeprune/{name}/{rel.as_posix()}"] = path
    return files


def check_imports(files: dict[str, Path]) -> None:
    """Refuse to pack code that imports torch or an ``edgeprune`` module missing from the archive."""
    modules = {re.sub(r"\.__init__$", "", n[:-3].replace("/", ".")) for n in files if n.endswith(".py")}
    for arc, path in files.items():
        if not arc.endswith(".py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for mod in names:
                if mod == "torch" or mod.startswith("torch."):
                    raise DeviceError(f"{arc} imports torch; the agent must run without it")
                if mod.startswith("edgeprune") and mod not in modules:
                    raise DeviceError(f"{arc} imports {mod}, which is not part of the agent archive")


def build_agent(out_path: str | os.PathLike, interpreter: Optional[str] = INTERPRETER) -> Path:
    """Write the agent zipapp to ``out_path`` (run it with ``python3 OUT.pyz run JOB_DIR``)."""
    files = agent_files()
    check_imports(files)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        # The zipapp format (shebang + zip with __main__.py), written in sorted order with fixed
        # timestamps: ``zipapp.create_archive`` walks folders in file-system order, not reproducibly.
        with open(tmp_out, "wb") as f:
            if interpreter:
                f.write(b"#!" + interpreter.encode("utf-8") + b"\n")
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                entries = {**{a: p.read_bytes() for a, p in files.items()}, "__main__.py": MAIN.encode()}
                for arc in sorted(entries):
                    info = zipfile.ZipInfo(arc, date_time=_FIXED_DATE)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    zf.writestr(info, entries[arc])
        os.chmod(tmp_out, 0o755)
        os.replace(tmp_out, out)  # the finished archive only; never a half-written one
    finally:
        if tmp_out.exists():
            tmp_out.unlink()
    return out
