"""Host side of a job: lay out the job folder for a device and read its results back.

One folder per device (``WORK/<device>/``) holds ``manifest.json``, ``candidates/<id>.onnx`` and
``results/<id>.json``; the same layout is mirrored on the device. Preparing a job again with the same
files and options keeps the results already there, which is how nothing measured is measured twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from edgeprune.devices.profile_schema import DeviceProfile
from edgeprune.devices.protocol import (
    MANIFEST,
    JobCandidate,
    Manifest,
    load_current_result,
    read_job_manifest,
    result_path,
)
from edgeprune.errors import DeviceError
from edgeprune.fileio import sha256_file, write_json

# the files a job profiles: paths, or id -> path.
# typing's Sequence/Mapping: collections.abc ones are not subscriptable at import on Python 3.8
CandidateFiles = Union[Sequence[Union[str, os.PathLike]], Mapping[str, Union[str, os.PathLike]]]


def candidate_ids(paths: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """Stable ids from file names (``yolo_s50.onnx`` -> ``yolo_s50``), made unique with a suffix."""
    out: dict[str, Path] = {}
    for p in paths:
        base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(p).stem).lstrip("._-")[:100] or "candidate"
        cid, n = base, 2
        while cid in out:
            cid, n = f"{base}-{n}", n + 1
        out[cid] = Path(p)
    return out


def prepare_job(
    job_dir: str | os.PathLike,
    candidates: CandidateFiles,
    profile: DeviceProfile,
    job_id: str | None = None,
    profile_options: Mapping[str, Any] | None = None,
    runtime_version: str | None = None,
) -> Manifest:
    """Copy the candidate files into ``job_dir/candidates`` and write its manifest for ``profile``;
    ``runtime_version`` makes the agent measure only on that version of the runtime."""
    job = Path(job_dir)
    items = dict(candidates) if isinstance(candidates, Mapping) else candidate_ids(list(candidates))
    if not items:
        raise DeviceError("no candidates to profile")
    cands = []
    for cid, src in items.items():
        src = Path(src)
        if not src.is_file():
            raise DeviceError(f"candidate '{cid}': file {src} does not exist")
        rel = f"candidates/{cid}{src.suffix or '.onnx'}"
        dst = job / rel
        digest = sha256_file(src)
        if not dst.is_file() or sha256_file(dst) != digest:
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
        cands.append({"id": cid, "file": rel, "sha256": digest})
    opts = dict(profile.profile_options)
    opts.update(profile_options or {})
    manifest = Manifest.from_dict({
        "protocol_version": 1,
        "job_id": job_id or f"{profile.name}",
        "runtime": profile.runtime,
        "runtime_options": profile.compile_options(),
        "profile_options": opts,
        "input_size": list(profile.input_size),
        "setup_checks": list(profile.setup_checks),
        "candidates": cands,
        "runtime_version": runtime_version,
    })
    write_json(job / MANIFEST, manifest.to_dict())
    (job / "results").mkdir(parents=True, exist_ok=True)
    return manifest


def current_results(job_dir: str | os.PathLike, manifest: Manifest | None = None) -> dict[str, dict]:
    """Results in ``job_dir`` that match the manifest (same file hash and options), by candidate id."""
    manifest = manifest or read_job_manifest(job_dir)
    key = manifest.options_sha256()
    out = {}
    for cand in manifest.candidates:
        result = load_current_result(job_dir, cand, key)
        if result is not None:
            out[cand.id] = result
    return out


def pending(job_dir: str | os.PathLike, manifest: Manifest) -> list[JobCandidate]:
    """Candidates of ``manifest`` without a current result in ``job_dir``."""
    done = current_results(job_dir, manifest)
    return [c for c in manifest.candidates if c.id not in done]


def job_results(job_dir: str | os.PathLike, manifest: Manifest | None = None) -> dict[str, dict]:
    """Every result in ``job_dir`` for this manifest's files and options (``status`` ok or failed)."""
    manifest = manifest or read_job_manifest(job_dir)
    key = manifest.options_sha256()
    out = {}
    for cand in manifest.candidates:
        try:
            result = json.loads(result_path(job_dir, cand.id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and result.get("sha256") == cand.sha256 \
                and result.get("options_sha256") == key:
            out[cand.id] = result
    return out
