"""The job protocol shared by the host and the on-device agent (stdlib only).

A job is a folder::

    manifest.json            {"protocol_version": 1, "job_id", "runtime", "runtime_options",
                              "profile_options", "input_size", "setup_checks",
                              "candidates": [{"id", "file", "sha256"}],
                              "runtime_version" (optional)}
    candidates/<id>.onnx     the files named by the manifest (relative, inside the folder)
    results/<id>.json        one per finished candidate, written atomically by the agent

A result is current when its candidate sha256 and its ``options_sha256`` (runtime + options) match
the manifest; current results are never recomputed, which is how interrupted jobs resume.
``runtime_version``, when set, is the runtime version the host keyed its measurements by: the agent
refuses the job on any other version, and it is part of ``options_sha256``, so results measured before
a runtime upgrade are not current.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeprune.errors import ProtocolError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MANIFEST = "manifest.json"
RESULTS_DIR = "results"
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class JobCandidate:
    """One model file of a device job, as its manifest names it (not a sweep candidate)."""

    id: str
    file: str  # relative to the job folder
    sha256: str


@dataclass
class Manifest:
    """What the agent must do: which files, which runtime, which options."""

    job_id: str
    runtime: str
    candidates: list[JobCandidate]
    runtime_options: dict[str, Any] = field(default_factory=dict)
    profile_options: dict[str, Any] = field(default_factory=dict)
    input_size: Optional[list[int]] = None
    setup_checks: Optional[list[Any]] = None  # None: the device's default checks
    protocol_version: int = PROTOCOL_VERSION
    runtime_version: Optional[str] = None  # None: any; set: the agent measures only on this version

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-able dict."""
        d = asdict(self)
        d["candidates"] = [asdict(c) for c in self.candidates]
        if self.runtime_version is None:  # absent, not null: manifests without it stay as they were
            d.pop("runtime_version")
        return d

    def options_sha256(self) -> str:
        """Hash of everything besides the model that changes a measurement."""
        key = {
            "runtime": self.runtime,
            "runtime_options": self.runtime_options,
            "profile_options": self.profile_options,
            "input_size": self.input_size,
        }
        if self.runtime_version is not None:  # only when set: hashes of jobs without it are unchanged
            key["runtime_version"] = self.runtime_version
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

    def subset(self, ids: list[str]) -> Manifest:
        """The same job restricted to candidates ``ids`` (what still has to be measured)."""
        keep = set(ids)
        d = self.to_dict()
        d["candidates"] = [c for c in d["candidates"] if c["id"] in keep]
        return Manifest.from_dict(d)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Validate and build a manifest; any problem is a ``ProtocolError`` naming the field."""
        if not isinstance(d, dict):
            raise ProtocolError("manifest must be a JSON object")
        version = d.get("protocol_version")
        if version not in SUPPORTED_VERSIONS:
            raise ProtocolError(
                f"unknown protocol_version {version!r}; this agent speaks {list(SUPPORTED_VERSIONS)} "
                "(rebuild the agent with the host's edgeprune: edgeprune agent-pack)"
            )
        for key, typ in (("job_id", str), ("runtime", str), ("candidates", list)):
            if not isinstance(d.get(key), typ):
                raise ProtocolError(f"manifest field '{key}' must be a {typ.__name__}")
        for key in ("runtime_options", "profile_options"):
            if not isinstance(d.get(key, {}), dict):
                raise ProtocolError(f"manifest field '{key}' must be an object")
        _check_setup_checks(d.get("setup_checks"))
        if not isinstance(d.get("runtime_version"), (str, type(None))):
            raise ProtocolError("manifest field 'runtime_version' must be a string or null")
        cands, seen = [], set()
        for i, c in enumerate(d["candidates"]):
            ok = isinstance(c, dict) and all(isinstance(c.get(k), str) for k in ("id", "file", "sha256"))
            if not ok:
                raise ProtocolError(f"candidates[{i}] must have string fields id, file, sha256")
            if not _ID_RE.match(c["id"]) or c["id"] in seen:
                raise ProtocolError(f"candidates[{i}].id {c['id']!r} is invalid or repeated "
                                    "(letters, digits, '.', '_', '-'; unique)")
            if not _SHA_RE.match(c["sha256"]):
                raise ProtocolError(f"candidates[{i}].sha256 is not a lowercase hex SHA-256")
            seen.add(c["id"])
            cands.append(JobCandidate(c["id"], c["file"], c["sha256"]))
        return cls(
            job_id=d["job_id"], runtime=d["runtime"], candidates=cands,
            runtime_options=dict(d.get("runtime_options") or {}),
            profile_options=dict(d.get("profile_options") or {}),
            input_size=d.get("input_size"), setup_checks=d.get("setup_checks"),
            protocol_version=version, runtime_version=d.get("runtime_version"),
        )


def _check_setup_checks(checks: Any) -> None:
    """``setup_checks`` is null or a list of check names / ``{name: expected}`` with known names."""
    from edgeprune.devices.environment import CHECK_NAMES

    fix = f"use null or a list of check names / {{name: expected}} objects; known: {', '.join(CHECK_NAMES)}"
    if checks is None:
        return
    if not isinstance(checks, list):
        kind = type(checks).__name__
        raise ProtocolError(f"manifest field 'setup_checks' must be a list, got {kind}; {fix}")
    for i, item in enumerate(checks):
        name = next(iter(item)) if isinstance(item, dict) and len(item) == 1 else item
        if not isinstance(name, str) or name not in CHECK_NAMES:
            raise ProtocolError(f"setup_checks[{i}] = {item!r} is not a known check; {fix}")


def read_job_manifest(job_dir: str | os.PathLike) -> Manifest:
    """Read ``manifest.json`` of a job folder."""
    path = Path(job_dir) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProtocolError(f"no {MANIFEST} in job folder '{job_dir}'") from None
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"{path}: unreadable manifest: {exc}") from None
    return Manifest.from_dict(data)


def resolve_inside(job_dir: str | os.PathLike, rel: str) -> Path:
    """The path of ``rel`` inside ``job_dir``; ``ProtocolError`` for absolute, ``..`` or escaping links."""
    if not rel or os.path.isabs(rel) or rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise ProtocolError(f"candidate path {rel!r} must be relative to the job folder")
    if ".." in re.split(r"[\\/]", rel):
        raise ProtocolError(f"candidate path {rel!r} must not contain '..'")
    root = Path(job_dir).resolve()
    path = (root / rel).resolve()  # follows symlinks: a link pointing outside is caught here
    if path != root and root not in path.parents:
        raise ProtocolError(f"candidate path {rel!r} resolves outside the job folder ({path})")
    return path


def verify_candidate(job_dir: str | os.PathLike, cand: JobCandidate) -> Path:
    """Check a candidate's path and hash; return its path."""
    from edgeprune.fileio import sha256_file

    path = resolve_inside(job_dir, cand.file)
    if not path.is_file():
        raise ProtocolError(f"candidate '{cand.id}': file {cand.file!r} is missing from the job folder")
    actual = sha256_file(path)
    if actual != cand.sha256:
        raise ProtocolError(
            f"candidate '{cand.id}': sha256 of {cand.file!r} is {actual[:12]}..., manifest says "
            f"{cand.sha256[:12]}... (file changed or tampered with)"
        )
    return path


def result_path(job_dir: str | os.PathLike, cand_id: str) -> Path:
    """Where the result of candidate ``cand_id`` lives."""
    return Path(job_dir) / RESULTS_DIR / f"{cand_id}.json"


def is_current(result: Any, cand: JobCandidate, options_sha256: str) -> bool:
    """Whether a result dict measured exactly this file with exactly these options, successfully."""
    return (
        isinstance(result, dict)
        and result.get("status") == "ok"
        and result.get("candidate") == cand.id
        and result.get("sha256") == cand.sha256
        and result.get("options_sha256") == options_sha256
    )


def load_current_result(
    job_dir: str | os.PathLike, cand: JobCandidate, options_sha256: str
) -> Optional[dict]:
    """The stored result of ``cand`` if it is current, else None (missing, stale or corrupt)."""
    path = result_path(job_dir, cand.id)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if is_current(result, cand, options_sha256) else None
