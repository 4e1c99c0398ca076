"""Device profiles: one YAML file per target (runtime, precision, threads, channel multiple, SSH).

Built-in profiles live in ``devices/profiles/``. Users add their own as a file path, or as
``NAME.yaml`` in a folder listed in ``EDGEPRUNE_DEVICES_PATH`` (``os.pathsep``-separated); a user
folder's profile wins over a built-in one of the same name. Every error names the file and field.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeprune.devices.environment import CHECK_NAMES
from edgeprune.errors import DeviceError

PRECISIONS = ("fp32", "fp16", "int8")
BUILTIN_DIR = Path(__file__).resolve().parent / "profiles"
ENV_VAR = "EDGEPRUNE_DEVICES_PATH"


@dataclass(frozen=True)
class SshSettings:
    """How to reach a device over SSH; ``host`` may be left out and given at run time."""

    host: Optional[str] = None
    user: Optional[str] = None
    port: Optional[int] = None
    python: str = "python3"
    remote_dir: str = ".edgeprune"
    identity_file: Optional[str] = None
    options: tuple[str, ...] = ()  # extra ``-o Key=Value`` options for ssh and scp
    env: dict[str, str] = field(default_factory=dict)  # environment of the agent on the device


@dataclass(frozen=True)
class DeviceProfile:
    """A profiling target: which runtime, at which precision and threads, and how to reach it."""

    name: str
    runtime: str
    description: str = ""
    precision: str = "fp32"
    threads: Optional[int] = None
    channel_multiple: int = 1
    input_size: tuple[int, int] = (640, 640)
    setup_checks: tuple[Any, ...] = ()  # "name" or {"name": expected}
    runtime_options: dict[str, Any] = field(default_factory=dict)
    profile_options: dict[str, Any] = field(default_factory=dict)
    ssh: Optional[SshSettings] = None
    source: str = ""  # the file it was loaded from

    def compile_options(self) -> dict[str, Any]:
        """Keyword arguments for ``Runtime.compile`` (precision, threads and the runtime options)."""
        opts: dict[str, Any] = {"precision": self.precision}
        if self.threads is not None:
            opts["threads"] = self.threads
        opts.update(self.runtime_options)
        return opts

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (the YAML fields)."""
        d = asdict(self)
        d.pop("source")
        d["input_size"] = list(self.input_size)
        d["setup_checks"] = list(self.setup_checks)
        if self.ssh is not None:
            d["ssh"]["options"] = list(self.ssh.options)
        return d


_TOP_FIELDS = {
    "name", "description", "runtime", "precision", "threads", "channel_multiple", "input_size",
    "setup_checks", "runtime_options", "profile_options", "ssh",
}
_SSH_FIELDS = {"host", "user", "port", "python", "remote_dir", "identity_file", "options", "env"}


def _search_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    return [*extra, BUILTIN_DIR]


def list_profiles() -> list[str]:
    """Names of all profiles found (user folders from ``EDGEPRUNE_DEVICES_PATH`` and built-ins)."""
    found = set()
    for d in _search_dirs():
        if d.is_dir():
            found.update(p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml"))
    return sorted(found)


def find_profile(name_or_path: str | os.PathLike) -> Path:
    """The file of a profile given by name or path; ``DeviceError`` listing known names if absent."""
    text = os.fspath(name_or_path)
    as_path = Path(text).expanduser()
    if text.endswith((".yaml", ".yml")) or os.sep in text or as_path.is_file():
        if not as_path.is_file():
            raise DeviceError(f"device profile file '{text}' does not exist")
        return as_path
    for d in _search_dirs():
        for ext in (".yaml", ".yml"):
            candidate = d / f"{text}{ext}"
            if candidate.is_file():
                return candidate
    raise DeviceError(
        f"unknown device profile '{text}'; known profiles: {', '.join(list_profiles())} "
        f"(add your own as a .yaml path or in a folder listed in {ENV_VAR})"
    )


def load_profile(name_or_path: str | os.PathLike | DeviceProfile) -> DeviceProfile:
    """Load and validate a device profile by name (built-in or user folder) or by file path."""
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    path = find_profile(name_or_path)
    import yaml  # host-side only: the on-device agent never reads profiles

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DeviceError(f"{path}: not valid YAML: {exc}") from None
    return profile_from_dict(data, source=str(path))


def profile_from_dict(data: Any, source: str = "<dict>") -> DeviceProfile:
    """Validate a profile mapping; errors name ``source`` and the field."""
    from edgeprune.runtimes.registry import names as runtime_names

    def fail(fld: str, msg: str) -> DeviceError:
        return DeviceError(f"{source}: field '{fld}': {msg}")

    if not isinstance(data, dict):
        raise DeviceError(f"{source}: a device profile must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - _TOP_FIELDS)
    if unknown:
        raise fail(unknown[0], f"unknown field; allowed fields: {', '.join(sorted(_TOP_FIELDS))}")
    for req in ("name", "runtime"):
        if req not in data:
            raise fail(req, "is required")
    name = _typed(data, "name", str, fail)
    runtime = _typed(data, "runtime", str, fail)
    if runtime not in runtime_names():
        raise fail("runtime", f"unknown runtime '{runtime}'; known: {', '.join(runtime_names())}")
    precision = _typed(data, "precision", str, fail, default="fp32")
    if precision not in PRECISIONS:
        raise fail("precision", f"'{precision}' is not one of {', '.join(PRECISIONS)}")
    threads = _typed(data, "threads", int, fail, default=None)
    if threads is not None and threads < 1:
        raise fail("threads", f"must be >= 1 or null, got {threads}")
    multiple = _typed(data, "channel_multiple", int, fail, default=1)
    if multiple < 1:
        raise fail("channel_multiple", f"must be >= 1, got {multiple}")
    return DeviceProfile(
        name=name,
        runtime=runtime,
        description=_typed(data, "description", str, fail, default=""),
        precision=precision,
        threads=threads,
        channel_multiple=multiple,
        input_size=_input_size(data.get("input_size", [640, 640]), fail),
        setup_checks=_checks(data.get("setup_checks") or [], fail),
        runtime_options=_typed(data, "runtime_options", dict, fail, default={}),
        profile_options=_typed(data, "profile_options", dict, fail, default={}),
        ssh=_ssh(data.get("ssh"), fail),
        source=source,
    )


def _typed(data: dict, key: str, typ: type, fail, default: Any = ...) -> Any:
    value = data.get(key, default)
    if value is ...:
        raise fail(key, "is required")
    if value is None and default is None:
        return None
    # bool is an int subclass: threads: true is a mistake, not 1
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise fail(key, f"must be {typ.__name__}, got {type(value).__name__} ({value!r})")
    return value


def _input_size(value: Any, fail) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    ok = isinstance(value, (list, tuple)) and len(value) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise fail("input_size", f"must be a positive int or [height, width], got {value!r}")
    return (value[0], value[1])


def _checks(value: Any, fail) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise fail("setup_checks", f"must be a list, got {type(value).__name__}")
    out = []
    for item in value:
        if isinstance(item, dict) and len(item) == 1:
            check = next(iter(item))
        elif isinstance(item, str):
            check = item
        else:
            raise fail("setup_checks", f"each entry is a check name or {{name: expected}}, got {item!r}")
        if check not in CHECK_NAMES:
            raise fail("setup_checks", f"unknown check '{check}'; known: {', '.join(CHECK_NAMES)}")
        out.append(item)
    return tuple(out)


def _ssh(value: Any, fail) -> Optional[SshSettings]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("ssh", f"must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - _SSH_FIELDS)
    if unknown:
        raise fail(f"ssh.{unknown[0]}", f"unknown field; allowed: {', '.join(sorted(_SSH_FIELDS))}")

    def sub(key: str, msg: str) -> DeviceError:
        return fail(f"ssh.{key}", msg)

    port = _typed(value, "port", int, sub, default=None)
    if port is not None and not 0 < port < 65536:
        raise sub("port", f"must be 1..65535, got {port}")
    options = _typed(value, "options", list, sub, default=[])
    env = _typed(value, "env", dict, sub, default={})
    if not all(isinstance(o, str) for o in options):
        raise sub("options", "must be a list of strings like 'Compression=yes'")
    if not all(isinstance(k, str) and isinstance(v, (str, int, float)) for k, v in env.items()):
        raise sub("env", "must map variable names to strings")
    return SshSettings(
        host=_typed(value, "host", str, sub, default=None),
        user=_typed(value, "user", str, sub, default=None),
        port=port,
        python=_typed(value, "python", str, sub, default="python3"),
        remote_dir=_typed(value, "remote_dir", str, sub, default=".edgeprune"),
        identity_file=_typed(value, "identity_file", str, sub, default=None),
        options=tuple(options),
        env={k: str(v) for k, v in env.items()},
    )
