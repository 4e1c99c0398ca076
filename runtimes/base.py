"""The small interface every runtime backend implements: Artifact (what compile made), Runtime
(compile + session), Session (validated numpy inference and profiling). Build is separate from run.

``Runtime.compile`` is one template for every backend: it checks the paths, imports the SDK, checks
option names, precision and threads, lets the backend check option values (``_check``), hashes the
ONNX, prepares the workdir, times the backend's build step (``_build``), turns an SDK failure into
``CompileError`` and saves the Artifact. A backend supplies those two steps and a session.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeprune.errors import (
    CompileError,
    EdgepruneError,
    IncompatibleArtifactError,
    InvalidConfigError,
    InvalidInputError,
    UnsupportedPrecisionError,
)
from edgeprune.fileio import read_json, sha256_file, write_json
from edgeprune.runtimes import registry

# The one key naming the GPU an artifact was built on: in artifact meta, in bundle manifests, in the
# environment record. Written and read under this name only (two names once disagreed: checks never fired).
GPU_NAME = "gpu_name"
ARTIFACT_JSON = "artifact.json"


@dataclass
class Artifact:
    """A compiled model on disk: ``path`` is the main file, ``files`` everything the session needs."""

    runtime: str
    path: str
    files: list[str] = field(default_factory=list)
    precision: str = "fp32"
    options: dict = field(default_factory=dict)
    onnx_sha256: str = ""
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Artifact:
        """Inverse of ``to_dict``; unknown keys are an error so a typo never passes silently."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown or "runtime" not in d or "path" not in d:
            raise InvalidConfigError(f"artifact JSON: unknown keys {sorted(unknown)} or missing runtime/path")
        return cls(**{k: d[k] for k in known if k in d})

    @property
    def directory(self) -> Path:
        return Path(self.path).parent

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``artifact.json`` next to the files, with paths relative to that folder (movable)."""
        directory = Path(directory) if directory is not None else self.directory
        d = self.to_dict()
        d["path"] = _relative(self.path, directory)
        d["files"] = [_relative(f, directory) for f in self.files]
        return write_json(directory / ARTIFACT_JSON, d)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Artifact:
        """Read ``artifact.json`` (or a folder holding one); paths come back absolute."""
        path = Path(path)
        if path.is_dir():
            path = path / ARTIFACT_JSON
        if not path.is_file():
            raise InvalidConfigError(f"no compiled artifact at {path} (expected {ARTIFACT_JSON})")
        try:
            data = read_json(path)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidConfigError(f"{path} is not valid JSON ({exc}); delete the folder to compile "
                                     "again") from None
        if not isinstance(data, dict):
            raise InvalidConfigError(f"{path} is not an artifact description (a JSON object)")
        art = cls.from_dict(data)
        base = path.parent.resolve()
        art.path = str((base / art.path).resolve())
        art.files = [str((base / f).resolve()) for f in art.files]
        missing = [f for f in art.files if not Path(f).exists()]
        if missing:
            raise InvalidConfigError(f"artifact {path} lists files that are missing: {missing}")
        return art


def _relative(p: str, directory: Path) -> str:
    """``p`` relative to ``directory``; a file right beside that folder as ``../name`` (a bundle's artifact
    uses the bundle's one ONNX copy); anything else absolute."""
    real, base = Path(p).resolve(), directory.resolve()
    if base in real.parents:
        return str(real.relative_to(base))
    if real.parent == base.parent:
        return f"../{real.name}"
    return str(p)


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, shape (None for a dynamic dim) and numpy dtype."""

    name: str
    shape: tuple
    dtype: np.dtype


class Session(ABC):
    """An opened artifact. Subclasses set ``inputs``/``outputs`` (TensorSpec lists) and define ``_run``."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def __init__(self, artifact: Artifact) -> None:
        self.artifact = artifact
        self.closed = False

    # --- the public surface ------------------------------------------------------------------
    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    @property
    def input_shapes(self) -> dict[str, tuple]:
        return {t.name: t.shape for t in self.inputs}

    def infer(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run once; outputs in ``output_names`` order."""
        return self._run(self.validate(feeds))

    def bind(self, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
        """Validate ``feeds`` once and return a no-argument callable that runs inference (for timing)."""
        checked = self.validate(feeds)
        return lambda: self._run(checked)

    def profile(self, feeds: Mapping[str, np.ndarray], config=None, **fields):
        """Time inference (warm-up, then enough runs); returns ``LatencyStats`` with the environment."""
        from edgeprune.runtimes.profiling import ProfileConfig, profile_callable

        config = ProfileConfig.make(config, **fields)
        stats = profile_callable(self.bind(feeds), config)
        stats.env = self.environment()
        return stats

    def environment(self) -> dict:
        """Runtime, version, precision, threads and machine facts recorded beside each measurement."""
        from edgeprune.runtimes.environment import collect

        a = self.artifact
        return collect(
            runtime_name=a.runtime,
            threads=a.options.get("threads"),
            precision=a.precision,
            extra={"runtime_version": a.meta.get("runtime_version"), **self._env_extra()},
        )

    def _env_extra(self) -> dict:
        """Backend facts worth recording (engine, providers, device); override in backends."""
        return {}

    def validate(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, dtypes and static dims; raise ``InvalidInputError`` naming the input."""
        if self.closed:
            raise InvalidInputError("session is closed")
        if not isinstance(feeds, Mapping):
            raise InvalidInputError(f"feeds must be a dict name -> array, got {type(feeds).__name__}")
        names = self.input_names
        missing = [n for n in names if n not in feeds]
        extra = [n for n in feeds if n not in names]
        if missing:
            raise InvalidInputError(f"missing input {missing[0]!r}; the model's inputs are {names}")
        if extra:
            raise InvalidInputError(f"unknown input {extra[0]!r}; the model's inputs are {names}")
        out = {}
        for spec in self.inputs:
            x = feeds[spec.name]
            if not isinstance(x, np.ndarray):
                raise InvalidInputError(f"input {spec.name!r} must be a numpy array, got {type(x).__name__}")
            if x.dtype != spec.dtype:
                raise InvalidInputError(
                    f"input {spec.name!r} has dtype {x.dtype}, the model expects {spec.dtype}"
                )
            if len(x.shape) != len(spec.shape) or any(
                isinstance(d, int) and d > 0 and d != s for d, s in zip(spec.shape, x.shape)
            ):
                raise InvalidInputError(
                    f"input {spec.name!r} has shape {tuple(x.shape)}, the model expects {spec.shape}"
                )
            out[spec.name] = np.ascontiguousarray(x)
        return out

    def close(self) -> None:
        """Release the runtime's resources; idempotent."""
        if not self.closed:
            self._close()
            self.closed = True

    def _close(self) -> None:  # noqa: B027  (optional hook: most sessions free memory on GC)
        return None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run the model on already validated feeds."""


def check_compile_paths(onnx_path: Any, workdir: Any) -> None:
    """``InvalidConfigError`` unless ``onnx_path`` is a file and ``workdir`` can be a folder."""
    if onnx_path is not None:
        src = Path(onnx_path)
        if src.is_dir():
            raise InvalidConfigError(f"{src} is a folder; compile takes an ONNX file "
                                     f"(e.g. {src / 'model.onnx'})")
        if not src.is_file():
            raise InvalidConfigError(f"ONNX file not found: {src}")
    if workdir is not None:
        p = Path(workdir)
        while not p.exists() and p != p.parent:
            p = p.parent
        if p.exists() and not p.is_dir():
            raise InvalidConfigError(f"workdir {workdir} cannot be a folder: {p} is a file; "
                                     "give a folder path")


@contextmanager
def failing_as(
    message: str, catch: Any = Exception, detail: Callable[[BaseException], str] = str
) -> Iterator[None]:
    """Turn an SDK exception (``catch``) raised inside the block into ``CompileError("message: detail")``;
    edgeprune's own errors pass through unchanged."""
    try:
        yield
    except EdgepruneError:
        raise
    except catch as exc:
        raise CompileError(f"{message}: {detail(exc)}") from exc


@dataclass
class CompileJob:
    """One compile in progress: what was asked, and what the backend's two steps decide and record."""

    onnx_path: Path
    workdir: Path
    precision: str  # checked against ``Runtime.precisions``; ``_check`` may change it (TensorRT on DLA)
    threads: int | None
    requested: dict  # the ``**options`` compile was given
    options: dict = field(default_factory=dict)  # the artifact's options; starts as {"threads": threads}
    meta: dict = field(default_factory=dict)  # backend facts for artifact.meta
    onnx_sha256: str = ""
    model: Path | None = None  # the ONNX copied into workdir, for runtimes whose artifact it is


class Runtime(ABC):
    """A runtime backend: ``compile`` an ONNX file into an Artifact, open it as a ``session``.

    A backend sets ``name`` (its registry name), ``precisions``, ``known_options`` (None: ``_check``
    checks the names itself) and ``copies_onnx`` (its artifact is the ONNX file itself), and defines
    ``_check``, ``_build`` and ``_open``.
    """

    name: str = ""
    precisions: tuple = ("fp32",)
    known_options: frozenset | None = frozenset()
    copies_onnx: bool = False

    def sdk(self) -> Any:
        """The runtime's SDK module; ``MissingDependencyError`` naming the extra that installs it."""
        return registry.import_sdk(self.name)

    def version(self) -> str:
        """The SDK's version string."""
        return str(self.sdk().__version__)

    def compile(
        self,
        onnx_path: str | os.PathLike,
        workdir: str | os.PathLike,
        precision: str = "fp32",
        threads: int | None = None,
        **options: Any,
    ) -> Artifact:
        """Build ``onnx_path`` for this runtime into ``workdir``; writes ``artifact.json`` there.

        Everything a user can get wrong is refused before any file is written; ``compile_s`` in the
        artifact's meta is the time of the backend's build step."""
        check_compile_paths(onnx_path, workdir)
        sdk = self.sdk()
        if self.known_options is not None:
            unknown = set(options) - self.known_options
            if unknown:
                raise InvalidConfigError(
                    f"{self.name}: unknown options {sorted(unknown)}; known: {sorted(self.known_options)}"
                )
        job = CompileJob(Path(onnx_path), Path(workdir), self.check_precision(precision),
                         self.check_threads(threads), dict(options))
        job.options = {"threads": job.threads}
        self._check(sdk, job)
        job.onnx_sha256 = self.onnx_sha256(onnx_path)
        job.workdir.mkdir(parents=True, exist_ok=True)
        if self.copies_onnx:
            job.model = self.copy_onnx(onnx_path, job.workdir)
        t0 = time.perf_counter()
        with failing_as(f"{self.name} could not compile {onnx_path}"):
            path, files = self._build(sdk, job)
        compile_s = time.perf_counter() - t0
        art = Artifact(
            runtime=self.name,
            path=str(path),
            files=[str(f) for f in files],
            precision=job.precision,
            options=job.options,
            onnx_sha256=job.onnx_sha256,
            meta={"runtime_version": self.version(), "compile_s": compile_s, **job.meta},
        )
        art.save()
        return art

    @abstractmethod
    def _check(self, sdk: Any, job: CompileJob) -> None:
        """Check the option values (and devices, precision there) and set ``job.options``; writes nothing."""

    @abstractmethod
    def _build(self, sdk: Any, job: CompileJob) -> tuple[Path, list[Path]]:
        """Build into ``job.workdir``: return the artifact's main file and all its files (timed)."""

    @abstractmethod
    def _open(self, artifact: Artifact) -> Session:
        """Open a session on an artifact of this runtime."""

    def session(self, artifact_or_path: Artifact | str | os.PathLike) -> Session:
        """Open an Artifact, an artifact folder/JSON, or an ONNX file (compiled into a temp folder)."""
        art = artifact_or_path
        if not isinstance(art, Artifact):
            p = Path(art)
            if p.suffix.lower() == ".onnx" and p.is_file():
                art = self.compile(p, tempfile.mkdtemp(prefix=f"edgeprune-{self.name}-"))
            else:
                art = Artifact.load(p)
        if art.runtime != self.name:
            raise IncompatibleArtifactError(f"artifact was compiled for '{art.runtime}', not '{self.name}'")
        return self._open(art)

    # --- checks and helpers -------------------------------------------------------------------
    def check_precision(self, precision: str) -> str:
        """Normalise ``precision`` and refuse one this runtime cannot honour."""
        p = str(precision).lower()
        if p not in self.precisions:
            raise UnsupportedPrecisionError(
                f"{self.name} does not support precision '{precision}' here; "
                f"supported: {list(self.precisions)}"
            )
        return p

    @staticmethod
    def check_threads(threads: int | None) -> int | None:
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InvalidConfigError(f"threads must be a positive int or None, got {threads!r}")
        return threads

    @staticmethod
    def copy_onnx(onnx_path: str | os.PathLike, workdir: str | os.PathLike, name: str = "model.onnx") -> Path:
        """Copy the ONNX file into ``workdir`` and return the copy (no external-data files)."""
        src = Path(onnx_path)
        if not src.is_file():
            raise InvalidConfigError(f"ONNX file not found: {src}")
        dst_dir = Path(workdir)
        dst_dir.mkdir(parents=True, exist_ok=True)
        dst = dst_dir / name
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
        return dst

    @staticmethod
    def onnx_sha256(onnx_path: str | os.PathLike) -> str:
        return sha256_file(onnx_path)
