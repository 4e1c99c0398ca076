"""TensorRT build options, the engine cache key and the engine sidecar check. Pure Python: it needs
neither TensorRT nor a GPU, so it is unit-tested anywhere (the GPU path lives in tensorrt_backend).

An engine only loads on the TensorRT version and GPU it was built with, so every engine is stored as a
plain file (what ``trtexec --loadEngine`` reads; no custom header) with a sidecar JSON holding the key
fields. A mismatched engine is rebuilt when compiling and refused when loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeprune.errors import IncompatibleArtifactError, InvalidConfigError, UnsupportedPrecisionError

TRT_PRECISIONS = ("fp32", "fp16", "int8")
SIDECAR_SUFFIX = ".json"
REBUILD_HINT = ("rebuild it on this device from its ONNX: runtimes.get('tensorrt').compile(onnx, workdir, "
                "precision=...) writes a matching engine into workdir")
# fields of the key that decide whether an engine can be loaded at all (vs. merely rebuilt)
COMPAT_FIELDS = ("tensorrt_version", "gpu_name", "compute_capability")


def parse_version(text: str) -> tuple[int, ...]:
    """``"8.5.2.2"`` / ``"v100300"`` / ``"10.3"`` -> (8, 5, 2, 2) / (10, 3, 0) / (10, 3)."""
    text = str(text).strip()
    m = re.fullmatch(r"v?(\d{4,6})", text)
    if m:  # trtexec's banner packs versions as v8501 / v100300 (major, minor 2 digits, patch 2 digits)
        n = int(m.group(1))
        return (n // 10000, n // 100 % 100, n % 100) if n >= 100000 else (n // 1000, n // 100 % 10, n % 100)
    parts = re.findall(r"\d+", text)
    if not parts:
        raise InvalidConfigError(f"cannot parse a TensorRT version from {text!r}")
    return tuple(int(p) for p in parts)


@dataclass(frozen=True)
class TrtBuildOptions:
    """What changes the engine a build makes; all of it goes into the cache key."""

    precision: str = "fp32"
    workspace_mib: int = 1024
    dla_core: int | None = None
    gpu_fallback: bool = True
    timing_cache: str | None = None  # path; reused across builds (not part of the key: it only speeds builds)
    int8_calibration_cache: str | None = None
    builder_optimization_level: int | None = None
    shapes: dict = field(default_factory=dict)  # input name -> static shape, for dynamic-shape ONNX

    def __post_init__(self) -> None:
        if self.dla_core is not None and self.precision == "fp32":
            # DLA runs fp16/int8 only: trtexec turns fp32 into fp16 for DLA, so the Python builder does
            # too, and the key says fp16 (one engine, whichever builder built it)
            object.__setattr__(self, "precision", "fp16")
        if self.precision not in TRT_PRECISIONS:
            raise UnsupportedPrecisionError(
                f"TensorRT precision must be one of {TRT_PRECISIONS}, got {self.precision!r}"
            )
        if int(self.workspace_mib) <= 0:
            raise InvalidConfigError(f"workspace_mib must be > 0, got {self.workspace_mib}")
        if self.dla_core is not None and int(self.dla_core) < 0:
            raise InvalidConfigError(f"dla_core must be >= 0, got {self.dla_core}")
        if self.builder_optimization_level is not None and not 0 <= self.builder_optimization_level <= 5:
            raise InvalidConfigError("builder_optimization_level must be 0..5")

    @classmethod
    def from_options(cls, precision: str = "fp32", **options: Any) -> TrtBuildOptions:
        """From ``compile(**options)``; unknown names are an error."""
        names = set(cls.__dataclass_fields__) - {"precision"}
        unknown = set(options) - names
        if unknown:
            raise InvalidConfigError(f"tensorrt: unknown options {sorted(unknown)}; known: {sorted(names)}")
        return cls(precision=str(precision).lower(), **options)

    def key_fields(self) -> dict:
        """The options that change the built engine: paths excluded, the calibration cache by its content
        (the same ranges make the same engine wherever the file lies; changed ranges, another one)."""
        d = asdict(self)
        d.pop("timing_cache")
        d.pop("int8_calibration_cache")
        d["shapes"] = {k: list(v) for k, v in sorted(self.shapes.items())}
        if self.precision == "int8":
            d["int8_calibration_sha256"] = calibration_sha256(self.int8_calibration_cache)
        return d


def calibration_sha256(path: str | None) -> str | None:
    """sha256 of an INT8 calibration cache file, None when there is none (yet)."""
    if not path or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_int8_inputs(options: TrtBuildOptions, builder: str, has_calibrator: bool) -> None:
    """Refuse an INT8 build that would run on placeholder ranges, naming how to build it properly.

    trtexec ``--int8`` without ``--calib`` builds with dummy scales (wrong boxes, no error), and a Python
    calibrator cannot be handed to trtexec: so both builders calibrate from one cache file, made once by
    the Python builder's calibrator.
    """
    if options.precision != "int8":
        return
    cache = options.int8_calibration_cache
    if not cache:
        raise UnsupportedPrecisionError(
            "TensorRT int8 needs int8_calibration_cache=PATH: an existing calibration cache, or where the "
            "Python builder writes one from calibrator=... (an IInt8EntropyCalibrator2 over ~500 real images)"
        )
    if Path(cache).is_file():
        return
    if builder == "trtexec":
        raise UnsupportedPrecisionError(
            f"int8 calibration cache {cache} does not exist and trtexec would use placeholder ranges; build "
            "once with builder='python' and calibrator=... (it writes that cache), then trtexec reuses it"
        )
    if not has_calibrator:
        raise UnsupportedPrecisionError(
            f"int8 calibration cache {cache} does not exist; pass calibrator=... to create it on this build"
        )


def cache_key_fields(
    onnx_sha256: str,
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str | tuple,
    options: TrtBuildOptions,
) -> dict:
    """Everything an engine depends on, as a JSON-able dict (written into the sidecar)."""
    cc = (
        compute_capability
        if isinstance(compute_capability, str)
        else ".".join(str(c) for c in compute_capability)
    )
    return {
        "onnx_sha256": onnx_sha256,
        "tensorrt_version": str(tensorrt_version),
        "gpu_name": str(gpu_name),
        "compute_capability": cc,
        "precision": options.precision,
        "options": options.key_fields(),
    }


def cache_key(fields: dict) -> str:
    """Short stable hash of ``cache_key_fields``; names the engine file."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def engine_filename(fields: dict) -> str:
    return f"model.{fields['precision']}.{cache_key(fields)}.engine"


def sidecar_for(fields: dict, extra: dict | None = None) -> dict:
    """Sidecar JSON content: the key, its fields, and facts such as build seconds."""
    return {"cache_key": cache_key(fields), "key_fields": fields, **(extra or {})}


def mismatched_fields(sidecar: dict, current: dict) -> list[str]:
    """Names of key fields where a stored engine's sidecar differs from the current build request."""
    stored = sidecar.get("key_fields") or {}
    return sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))


def check_loadable(sidecar: dict, current: dict, engine_path: str = "engine") -> None:
    """Refuse to load an engine built for another TensorRT version or GPU (it would fail or misbehave)."""
    stored = sidecar.get("key_fields")
    if not stored:
        raise IncompatibleArtifactError(f"{engine_path}: sidecar has no key fields; rebuild the engine")
    diffs = [k for k in COMPAT_FIELDS if stored.get(k) != current.get(k)]
    if diffs:
        detail = ", ".join(f"{k}: built {stored.get(k)!r}, here {current.get(k)!r}" for k in diffs)
        raise IncompatibleArtifactError(
            f"{engine_path} was built for another TensorRT/GPU ({detail}); {REBUILD_HINT}"
        )


def check_same_engine(sidecar: dict, current: dict, engine_path: str = "engine") -> None:
    """Refuse an engine whose sidecar describes another build (ONNX, precision, options, calibration) or
    whose key was edited: a cache key must mean one engine, whichever builder made it."""
    stored = sidecar.get("key_fields") or {}
    if sidecar.get("cache_key") != cache_key(stored):
        raise IncompatibleArtifactError(f"{engine_path}: its sidecar's cache_key does not match its fields; "
                                        f"{REBUILD_HINT}")
    diffs = mismatched_fields(sidecar, current)
    if diffs:
        raise IncompatibleArtifactError(
            f"{engine_path} was built with other settings (differs in: {', '.join(diffs)}); {REBUILD_HINT}"
        )


def needs_rebuild(sidecar: dict | None, current: dict) -> bool:
    """True when no sidecar exists or any key field differs (ONNX, versions, GPU, precision, options)."""
    return sidecar is None or bool(mismatched_fields(sidecar, current))


def read_sidecar(engine_path: str | os.PathLike) -> dict | None:
    """The sidecar JSON of an engine file, or None when missing or unreadable."""
    p = Path(str(engine_path) + SIDECAR_SUFFIX)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def resolve_engine(workdir: str | os.PathLike, fields: dict) -> tuple[Path, bool]:
    """(engine path for these key fields, whether an existing engine there may be reused)."""
    path = Path(workdir) / engine_filename(fields)
    reusable = path.is_file() and not needs_rebuild(read_sidecar(path), fields)
    return path, reusable
