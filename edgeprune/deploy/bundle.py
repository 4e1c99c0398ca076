"""Write a deployment bundle for one target's pick (loaded by ``edgeprune.runtimes.load_bundle``).

The folder is built in a temporary sibling and renamed into place, so a reader never sees half a
bundle. The manifest records the SHA-256 of every file; the loader refuses a bundle whose files
changed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgeprune._version import __version__
from edgeprune.errors import BundleError, EdgepruneError
from edgeprune.fileio import sha256_file, write_json
from edgeprune.runtimes.base import GPU_NAME
from edgeprune.runtimes.bundle import FORMAT, FORMAT_VERSION, MANIFEST, read_manifest
from edgeprune.runtimes.model_io import ModelIO

ONNX_NAME = "model.onnx"
ARTIFACT_DIR = "artifact"
DEFAULT_POSTPROCESS = {"conf_thres": 0.25, "iou_thres": 0.45, "max_det": 300, "class_agnostic": False}


def onnx_io(onnx_path: str | os.PathLike) -> dict:
    """The edgeprune metadata of an ONNX file, completed from its graph (input name/size, output name)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    meta: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key == "edgeprune":
            try:
                meta = json.loads(prop.value)
            except ValueError:
                raise BundleError(f"{onnx_path}: metadata 'edgeprune' is not valid JSON") from None
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    meta.setdefault("input_name", inp.name)
    if "input_size" not in meta:
        if len(dims) != 4 or not dims[2] or not dims[3]:
            raise BundleError(
                f"{onnx_path}: cannot tell the input size (input {inp.name} has dims {dims}) "
                f"and the ONNX has no edgeprune metadata"
            )
        meta["input_size"] = [dims[2], dims[3]]
    meta.setdefault("output_name", model.graph.output[0].name)
    return meta


def write_bundle(
    out_dir: str | os.PathLike,
    onnx_path: str | os.PathLike,
    *,
    runtime: dict,
    artifact: Any = None,
    class_names: list[str] | None = None,
    postprocess: dict | None = None,
    device: dict | None = None,
    model_info: dict | None = None,
    latency: dict | None = None,
    accuracy: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the bundle folder ``out_dir`` (replaced atomically if it exists) and return its path.

    ``runtime``: {"name", "version", "precision", "threads", ...}; ``artifact``: the compiled
    ``Artifact`` (files copied under ``artifact/``) or None; ``latency``: ``LatencyStats.to_dict``.
    """
    out_dir = Path(out_dir)
    meta = onnx_io(onnx_path)
    names = list(class_names if class_names is not None else meta.get("class_names") or [])
    if not names:
        raise BundleError(
            f"no class names for the bundle: pass class_names or export {onnx_path} with edgeprune metadata"
        )
    try:
        io = ModelIO.from_dict({**meta, "class_names": names})
    except EdgepruneError as e:
        raise BundleError(f"{onnx_path}: the model's input/output description is invalid: {e}") from e
    if "name" not in runtime:
        raise BundleError("runtime info for the bundle needs a 'name'")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        shutil.copyfile(onnx_path, tmp / ONNX_NAME)
        art_info = None
        if artifact is not None:
            art_info = _copy_artifact(artifact, tmp / ARTIFACT_DIR, tmp / ONNX_NAME)
        files = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "edgeprune_version": __version__,
            "model": ONNX_NAME,  # the portable ONNX; plain OpenCV apps read it directly
            **io.to_manifest(),
            "postprocess": {**DEFAULT_POSTPROCESS, **(postprocess or {})},
            "runtime": dict(runtime),
            "artifact": art_info,
            "device": device or {},
            "model_info": {
                "sparsity": meta.get("sparsity"),
                "plan_sha256": meta.get("plan_sha256"),
                **(model_info or {}),
            },
            "latency": latency,
            "accuracy": accuracy,
            **(extra or {}),
            "files": files,
        }
        write_json(tmp / MANIFEST, manifest)
        read_manifest(tmp)  # the writer must produce what the reader accepts
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _copy_artifact(artifact: Any, dest: Path, model: Path) -> dict:
    """Copy an Artifact's files into ``dest`` keeping their layout; returns the manifest's artifact entry.

    A file with the bytes of the bundle's ``model`` (ONNX Runtime's and OpenCV's artifact is the ONNX
    itself) is not copied: ``artifact.json`` points at the bundle's one copy (``../model.onnx``)."""
    from edgeprune.runtimes.base import Artifact

    src_dir = Path(artifact.path).resolve().parent
    dest.mkdir(parents=True)
    model_sha = sha256_file(model)
    placed = {}  # source file -> where the bundle holds it
    for f in artifact.files or [artifact.path]:
        f = Path(f).resolve()
        if sha256_file(f) == model_sha:
            placed[f] = model
            continue
        try:
            rel = f.relative_to(src_dir)
        except ValueError:
            rel = Path(f.name)  # files outside the main file's folder are flattened
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest / rel)
        placed[f] = dest / rel
    main_src = Path(artifact.path).resolve()
    main = placed.get(main_src) or dest / main_src.relative_to(src_dir)
    Artifact(
        runtime=artifact.runtime,
        path=str(main),
        files=[str(p) for p in placed.values()],
        precision=artifact.precision,
        options=dict(artifact.options),
        onnx_sha256=artifact.onnx_sha256,
        meta=dict(artifact.meta),
    ).save(dest)
    return {
        "dir": ARTIFACT_DIR,
        "runtime": artifact.runtime,
        "precision": artifact.precision,
        "runtime_version": artifact.meta.get("runtime_version"),
        GPU_NAME: artifact.meta.get(GPU_NAME),  # the key every backend writes (runtimes.base.GPU_NAME)
        "main_file": main.relative_to(dest.parent).as_posix(),
    }


def _replace_dir(new: Path, dest: Path) -> None:
    """Rename ``new`` to ``dest``; an existing ``dest`` is moved aside first and removed after."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(new, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
