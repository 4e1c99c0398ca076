"""Load a deployment bundle and run it: ``load_bundle(path).detect(bgr_image)``. Never imports torch.

A bundle is a folder with ``model.onnx``, optionally the compiled artifact for its runtime under
``artifact/`` (with its ``artifact.json``; an artifact that is the ONNX itself points at ``../model.onnx``,
so no file is stored twice), and ``manifest.json`` describing everything an app needs:
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
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from edgeprune.errors import BundleError, EdgepruneError, IncompatibleArtifactError, InvalidInputError
from edgeprune.fileio import read_json, sha256_file
from edgeprune.runtimes.base import GPU_NAME
from edgeprune.runtimes.model_io import ModelIO
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


def confined(root: Path, rel: Any, what: str) -> Path:
    """``root / rel`` for a relative path that stays inside ``root`` with no symlink on the way;
    ``BundleError`` otherwise (a manifest must not make us read or run files outside its bundle)."""
    if not isinstance(rel, str) or not rel or "\x00" in rel:
        raise BundleError(f"bundle {root}: {what} must be a relative path inside the bundle, got {rel!r}")
    pure = PurePosixPath(rel.replace("\\", "/"))
    if pure.is_absolute() or PureWindowsPath(rel).drive or ".." in pure.parts:
        raise BundleError(f"bundle {root}: {what} {rel!r} points outside the bundle folder; bundle paths "
                          "must be relative and stay inside it (rewrite the bundle with write_bundle)")
    p = root
    for part in pure.parts:
        p = p / part
        if p.is_symlink():
            raise BundleError(f"bundle {root}: {what} {rel!r} goes through the symlink {p}; bundles may not "
                              "contain symlinks (copy the file in and rewrite the bundle)")
    real_root = root.resolve()
    real = p.resolve()
    if real != real_root and real_root not in real.parents:
        raise BundleError(f"bundle {root}: {what} {rel!r} resolves outside the bundle folder")
    return p


def check_postprocess(pp: Any, where: str) -> None:
    """Numeric post-processing settings must be numbers in range (``BundleError`` naming the field)."""
    if not isinstance(pp, dict):
        raise BundleError(f"{where}: 'postprocess' must be a mapping, got {pp!r}")
    for key in ("conf_thres", "iou_thres"):
        v = pp.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1):
            raise BundleError(f"{where}: postprocess.{key} must be a number between 0 and 1, got {v!r}")
    v = pp.get("max_det")
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise BundleError(f"{where}: postprocess.max_det must be a positive integer, got {v!r}")
    v = pp.get("class_agnostic")
    if v is not None and not isinstance(v, bool):
        raise BundleError(f"{where}: postprocess.class_agnostic must be true or false, got {v!r}")


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and validate ``manifest.json`` of the bundle folder ``path``; ``BundleError`` if malformed."""
    path = Path(path)
    mpath = path / MANIFEST if path.is_dir() else path
    if not mpath.is_file():
        raise BundleError(f"not a bundle: {mpath} is missing")
    try:
        m = read_json(mpath)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{mpath} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {mpath}: {exc.strerror or exc}") from None
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
    files = m["files"]
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise BundleError(f"{mpath}: 'files' must map relative paths to SHA-256 hex digests")
    if not isinstance(m["model"], str) or m["model"] not in files:
        raise BundleError(f"{mpath}: 'model' must name the bundle's ONNX file listed under 'files'")
    root = mpath.parent
    for rel in files:
        confined(root, rel, "file")
    confined(root, m["model"], "'model'")
    art = m.get("artifact")
    if art is not None:
        if not isinstance(art, dict):
            raise BundleError(f"{mpath}: 'artifact' must be a mapping or null")
        if art.get("dir") is not None:
            confined(root, art["dir"], "'artifact.dir'")
    check_postprocess(m["postprocess"], str(mpath))
    for key in ("input", "output", "runtime"):
        if not isinstance(m[key], dict):
            raise BundleError(f"{mpath}: '{key}' must be a mapping")
    size = m["input"].get("size")
    if not (isinstance(size, list) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise BundleError(f"{mpath}: input.size must be [height, width] in pixels, got {size!r}")
    return m


def verify_bundle(path: str | os.PathLike, manifest: dict | None = None) -> dict:
    """Check the SHA-256 of every file the manifest lists; ``BundleError`` names a missing/changed file."""
    path = Path(path)
    manifest = manifest or read_manifest(path)
    for rel, digest in manifest["files"].items():
        f = confined(path, rel, "file")
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
    """Name of GPU 0 as CUDA reports it (what the TensorRT backend records), else ``nvidia-smi``'s;
    None when there is no GPU. Used to refuse foreign engines."""
    try:
        from edgeprune.runtimes.cuda_runtime import get_cuda

        return get_cuda().device_info(0)[0]
    except Exception:  # no CUDA here (or no device): fall back to nvidia-smi, then to "unknown"
        pass
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
    g = built.get(GPU_NAME)
    if g and here_gpu and str(g) != str(here_gpu):
        raise IncompatibleArtifactError(
            f"the bundle's {runtime} engine was built on GPU '{g}', this machine has '{here_gpu}'; "
            f"rebuild on this device: load_bundle(path, rebuild=True)"
        )


def check_image(image: Any) -> None:
    """Refuse what is not a uint8 BGR ``(H, W, 3)`` image, naming the conversion to make."""
    if not isinstance(image, np.ndarray):
        raise InvalidInputError(f"detect() takes a numpy uint8 BGR image (H, W, 3) as cv2.imread returns, "
                                f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating):
            fix = "a float image in 0..1 must be converted: (img * 255).round().astype(np.uint8)"
        elif image.dtype == np.uint16:
            fix = "a 16-bit image must be scaled to 8 bits: (img >> 8).astype(np.uint8)"
        else:
            fix = "convert it to 8-bit BGR first"
        raise InvalidInputError(f"detect() takes a uint8 BGR image (H, W, 3), got dtype {image.dtype}; {fix}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InvalidInputError(f"detect() takes a uint8 BGR image (H, W, 3), got shape {image.shape}; "
                                "grey: cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), BGRA: cv2.COLOR_BGRA2BGR")


def _load_artifact(path: Path, art_rel: str, manifest: dict, artifact_cls: Any) -> Any:
    """The bundle's compiled artifact; every file it names must lie in the bundle and be one of the
    manifest's hashed files (so what is run is what was hash-checked)."""
    art_dir = confined(path, art_rel, "'artifact.dir'")
    try:
        art = artifact_cls.load(art_dir)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"bundle {path}: {art_rel}/artifact.json is not valid JSON: {exc}") from None
    except Exception as exc:  # noqa: BLE001  (InvalidConfigError and friends: say it is the bundle's)
        raise BundleError(f"bundle {path}: cannot load its artifact {art_rel!r}: {exc}") from None
    listed = set(manifest["files"])
    root = path.resolve()
    for f in [art.path, *art.files]:
        real = Path(f).resolve()
        rel = real.relative_to(root).as_posix() if root in real.parents else None
        if rel is None or rel not in listed:
            raise BundleError(f"bundle {path}: the artifact's file {f} is not one of the bundle's hashed "
                              "files; refusing to run it (rebuild: load_bundle(path, rebuild=True))")
        confined(path, rel, "artifact file")
    return art


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
        try:
            self.io = ModelIO.from_manifest(manifest)
        except EdgepruneError as exc:
            raise BundleError(f"bundle {path}: {exc}") from None
        self.input_name: str = self.io.input_name
        self.input_size: tuple[int, int] = self.io.input_size
        self.pad_value: int = self.io.pad_value
        self.names: list[str] = list(self.io.class_names)
        pp = manifest["postprocess"]
        self.conf_thres = float(conf_thres)
        self.iou_thres = float(iou_thres)
        self.max_det = int(pp.get("max_det", 300))
        self.class_agnostic = bool(pp.get("class_agnostic", False))
        self._tmpdir = tmpdir
        self._last = {"pre_ms": 0.0, "infer_ms": 0.0, "post_ms": 0.0, "total_ms": 0.0}
        self._sum = dict.fromkeys(self._last, 0.0)
        self._count = 0
        if self.io.color != "RGB":
            raise BundleError(f"bundle {path}: only RGB inputs are supported, manifest says {self.io.color}")
        if abs(self.io.scale - 1 / 255) > 1e-9:
            raise BundleError(
                f"bundle {path}: normalisation scale {self.io.scale} is not supported (1/255 only)")

    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Letterbox, infer, NMS; boxes (xyxy) come back in the ORIGINAL image's pixels.

        Input contract: a ``uint8`` BGR image of shape ``(H, W, 3)``, as ``cv2.imread`` returns it;
        anything else (float images in 0..1, 16-bit, grey, RGBA) raises ``InvalidInputError``.
        """
        check_image(image_bgr)
        t0 = time.perf_counter()
        x, lb = preprocess(image_bgr, self.input_size, self.pad_value)
        t1 = time.perf_counter()
        out = self.session.infer({self.input_name: x})[0]
        t2 = time.perf_counter()
        if out.shape[-1] != self.io.row_width:
            raise BundleError(
                f"bundle {self.path}: the model outputs rows of {out.shape[-1]} numbers, but layout "
                f"{self.io.output_layout} with {self.io.num_classes} classes means {self.io.row_width}")
        det = postprocess(out, self.conf_thres, self.iou_thres, self.max_det, self.class_agnostic,
                          self.io.output_layout)
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
        art = _load_artifact(path, art_rel, manifest, Artifact)
        built = {**art.meta, **(manifest.get("artifact") or {})}
        check_artifact_compatible(
            name, built, rt.version(), current_gpu() if name in VERSION_LOCKED else None
        )
        same_version = str(built.get("runtime_version") or rt.version()) == str(rt.version())
        same_threads = threads == art.options.get("threads", threads)
        if same_version and same_threads:
            source = "bundle" if verify else "bundle (hashes not checked: verify=False)"
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
            art = rt.compile(confined(path, onnx_rel, "'model'"), wd, precision=precision, threads=threads)
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
