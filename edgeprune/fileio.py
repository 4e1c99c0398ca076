"""Atomic file writes and hashing, shared by every part of edgeprune (torch-free).

Results users keep are written to a temporary file in the same folder and renamed over the target,
so a killed process never leaves a half-written file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; ``ValueError`` (not RecursionError) for one nested too deeply to parse."""
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except RecursionError:
            raise ValueError(f"{path}: JSON nested too deeply") from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_yaml_config(path: str | os.PathLike) -> tuple[Any, Path]:
    """Parse a YAML config file; returns (data, the file's folder for resolving relative paths).

    A missing file or invalid YAML raises ``InvalidConfigError`` naming the file.
    """
    import yaml

    from edgeprune.errors import InvalidConfigError

    path = Path(path)
    if not path.is_file():
        raise InvalidConfigError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError:
        raise InvalidConfigError(f"config file {path} is not UTF-8 text (is it a binary file?)") from None
    except RecursionError:
        raise InvalidConfigError(f"config file {path} is nested too deeply to be a config") from None
    return data, path.resolve().parent
