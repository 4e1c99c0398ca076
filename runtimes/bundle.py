"""Load a deployment bundle and run it: ``load_bundle(path).detect(bgr_image)``. Never imports torch.

A bundle is a folder with ``model.onnx``, optionally the compiled artifact for its runtime under
``artifact/`` (with its ``artifact.json``), and ``manifest.json`` describing everything an app needs:
input name/size/layout, letterbox pad value, normalisation, colour order, class names, output
layout, score/NMS thresholds, precision, runtime and version, device, measured latency, accuracy,
and the SHA-256 of every file. ``edgeprune.deploy.bundle.write_bundle`` writes it.

    det = load_bundle("bundle/")
    d = det.detect(cv2.imread("part.jpg"))     # boxes in original image pixels (xyxy)
    det.timings                                # pre / infer / post ms of the last call + averages
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import BundleError, IncompatibleArtifactError
from edgeprune.runtimes.fileio import read_json, sha256_file
from edgeprune.runtimes.postprocess import Detections, postprocess
from edgeprune.runtimes.preprocess import boxes_from_letterbox, preprocess

MANIFEST = "manifest.json"
FORMAT = "edgeprune-bundle"
FORMAT_VERSION = 1
REQUIRED = (
    "format",
    "format_version",
    "model",
    "input",
    "output",
    "class_names",
    "postprocess",
    "runtime",
    "files",
)
# runtimes whose compiled artifacts only load with the exact SDK version and GPU they were built with
VERSION_LOCKED = ("tensorrt",)


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and validate ``manifest.json`` of the bundle folder ``path``; ``BundleError`` if malformed."""
    path = Path(path)
    mpath = path / MANIFEST if path.is_dir() else path
    if not mpath.is_file():
        raise BundleError(f"not a bundle: {mpath} is missing")
    try:
        m = read_json(mpath)
    except ValueError as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise BundleError(f"{mpath} is not an edgeprune bundle manifest (format != '{FORMAT}')")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{mpath}: bundle format version {m.get('format_version')} is not supported "
            f"(this edgeprune reads version {FORMAT_VERSION})"
        )
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise BundleError(f"{mpath} lacks the field(s) {missing}")
    if not isinstance(m["model"], str) or m["model"] not in m["files"]:
        raise BundleError(f"{mpath}: 'model' must name the bundle's ONNX file listed under 'files'")
    return m


def verify_bundle(path: str | os.PathLike, manifest: dict | None = None) -> dict:
    """Check the SHA-256 of every file the manifest lists; ``BundleError`` names a missing/changed file."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    for rel, digest in manifest["files"].items():
        f = path / rel
        if not f.is_file():
            raise BundleError(f"bundle {path}: file '{rel}' listed in the manifest is missing")
        actual = sha256_file(f)
        if actual != digest:
            raise BundleError(
                f"bundle {path}: file '{rel}' does not match its SHA-256 in the manifest "
                f"(expected {digest[:12]}..., found {actual[:12]}...); the bundle was modified or corrupted"
            )
    return manifest


def current_gpu() -> str | None:
    """Name of GPU 0 via ``nvidia-smi`` (None when there is none); used to refuse foreign engines."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [s.strip() for s in out.splitlines() if s.strip()]
    return lines[0] if lines else None


def check_artifact_compatible(runtime: str, built: dict, here_version: str, here_gpu: str | None) -> None:
    """Refuse an engine built for another TensorRT version or GPU (``IncompatibleArtifactError``)."""
    if runtime not in VERSION_LOCKED:
        return
    v = built.get("runtime_version")
    if v and here_version and str(v) != str(here_version):
        raise IncompatibleArtifactError(
            f"the bundle's {runtime} engine was built with {runtime} {v}, this machine has {here_version}; "
            f"engines only load with the version that built them. Rebuild on this device: "
            f"load_bundle(path, rebuild=True) compiles the bundle's model.onnx here"
        )
    g = built.get("gpu")
    if g and here_gpu and str(g) != str(here_gpu):
        raise IncompatibleArtifactError(
            f"the bundle's {runtime} engine was built on GPU '{g}', this machine has '{here_gpu}'; "
            f"rebuild on this device: load_bundle(path, rebuild=True)"
        )


class Detector:
    """A loaded bundle: ``detect(bgr_image) -> Detections`` in original image pixels, and ``timings``."""

    def __init__(
        self,
        path: Path,
        manifest: dict,
        session: Any,
        runtime: str,
        artifact_source: str,
        conf_thres: float,
        iou_thres: float,
        tmpdir: str | None = None,
    ) -> None:
        self.path = path
        self.manifest = manifest
        self.session = session
        self.runtime = runtime
        self.artifact_source = artifact_source  # "bundle" or "compiled from model.onnx"
        inp = manifest["input"]
        self.input_name: str = inp["name"]
        self.input_size: tuple[int, int] = (int(inp["size"][0]), int(inp["size"][1]))
        self.pad_value: int = int(inp.get("letterbox", {}).get("pad_value", 114))
        self.names: list[str] = list(manifest["class_names"])
        pp = manifest["postprocess"]
        self.conf_thres = float(conf_thres)
        self.iou_thres = float(iou_thres)
        self.max_det = int(pp.get("max_det", 300))
        self.class_agnostic = bool(pp.get("class_agnostic", False))
        self._tmpdir = tmpdir
        self._last = {"pre_ms": 0.0, "infer_ms": 0.0, "post_ms": 0.0, "total_ms": 0.0}
        self._sum = dict.fromkeys(self._last, 0.0)
        self._count = 0
        if inp.get("layout", "NCHW") != "NCHW" or inp.get("color", "RGB") != "RGB":
            raise BundleError(
                f"bundle {path}: only NCHW RGB inputs are supported, manifest says "
                f"{inp.get('layout')} {inp.get('color')}"
            )
        scale = float(inp.get("normalization", {}).get("scale", 1 / 255))
        if abs(scale - 1 / 255) > 1e-9:
            raise BundleError(f"bundle {path}: normalisation scale {scale} is not supported (1/255 only)")

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Letterbox, infer, NMS; boxes (xyxy) come back in the ORIGINAL image's pixels."""
        t0 = time.perf_counter()
        x, lb = preprocess(image_bgr, self.input_size, self.pad_value)
        t1 = time.perf_counter()
        out = self.session.infer({self.input_name: x})[0]
        t2 = time.perf_counter()
        det = postprocess(out, self.conf_thres, self.iou_thres, self.max_det, self.class_agnostic)
        if len(det):
            det.boxes = boxes_from_letterbox(det.boxes, lb).astype(np.float32)
        t3 = time.perf_counter()
        self._last = {
            "pre_ms": (t1 - t0) * 1e3,
            "infer_ms": (t2 - t1) * 1e3,
            "post_ms": (t3 - t2) * 1e3,
            "total_ms": (t3 - t0) * 1e3,
        }
        for k, v in self._last.items():
            self._sum[k] += v
        self._count += 1
        return det

    @property
    def timings(self) -> dict:
        """Last call's pre/infer/post/total ms, their running averages (``avg_*``) and the call count."""
        avg = {f"avg_{k}": (v / self._count if self._count else 0.0) for k, v in self._sum.items()}
        return {**self._last, **avg, "calls": self._count}

    def close(self) -> None:
        """Close the session and remove any temporary compile folder."""
        self.session.close()
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Detector:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Detector({str(self.path)!r}, runtime={self.runtime!r}, input={self.input_size}, "
            f"classes={len(self.names)}, artifact={self.artifact_source!r})"
        )


def load_bundle(
    path: str | os.PathLike,
    runtime: str | None = None,
    verify: bool = True,
    *,
    threads: int | None = None,
    conf_thres: float | None = None,
    iou_thres: float | None = None,
    rebuild: bool = False,
    workdir: str | os.PathLike | None = None,
) -> Detector:
    """Open a bundle folder as a ``Detector``.

    Uses the bundle's compiled artifact when it was built for ``runtime`` (default: the manifest's)
    and matches this machine; otherwise compiles ``model.onnx`` (into ``workdir`` or a temp folder).
    A TensorRT engine built with another TensorRT version or GPU raises ``IncompatibleArtifactError``
    unless ``rebuild=True``. With ``verify`` every file's SHA-256 is checked first (``BundleError``).
    """
    from edgeprune.runtimes import registry
    from edgeprune.runtimes.base import Artifact

    path = Path(path)
    manifest = read_manifest(path)
    if verify:
        verify_bundle(path, manifest)
    rt_info = manifest["runtime"]
    name = runtime or rt_info["name"]
    rt = registry.get(name)
    precision = rt_info.get("precision", "fp32") if name == rt_info["name"] else "fp32"
    threads = threads if threads is not None else rt_info.get("threads")
    art_rel = (manifest.get("artifact") or {}).get("dir")
    art = None
    source = "compiled from model.onnx"
    if art_rel and name == rt_info["name"] and not rebuild:
        art = Artifact.load(path / art_rel)
        built = {**art.meta, **(manifest.get("artifact") or {})}
        check_artifact_compatible(
            name, built, rt.version(), current_gpu() if name in VERSION_LOCKED else None
        )
        same_version = str(built.get("runtime_version") or rt.version()) == str(rt.version())
        same_threads = threads == art.options.get("threads", threads)
        if same_version and same_threads:
            source = "bundle"
        else:  # portable runtimes: recompile rather than run an artifact from another version
            art = None
    tmp = None
    if art is None:
        onnx_rel = manifest["model"]
        wd = (
            Path(workdir)
            if workdir is not None
            else Path(tmp := tempfile.mkdtemp(prefix="edgeprune-bundle-"))
        )
        try:
            art = rt.compile(path / onnx_rel, wd, precision=precision, threads=threads)
        except BaseException:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
    session = rt.session(art)
    pp = manifest["postprocess"]
    return Detector(
        path,
        manifest,
        session,
        name,
        source,
        conf_thres if conf_thres is not None else float(pp.get("conf_thres", 0.25)),
        iou_thres if iou_thres is not None else float(pp.get("iou_thres", 0.45)),
        tmp,
    )
