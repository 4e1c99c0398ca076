"""Sweep targets: a local runtime (name, precision, threads) or a device profile reached over SSH."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgeprune.errors import InvalidConfigError

# Channel multiple that removes latency steps when no device profile says otherwise. CPU SIMD
# (AVX2: 8 floats) and tensor-core fp16 (8); int8 tensor-core kernels want 32 (TensorRT docs).
DEFAULT_CHANNEL_MULTIPLE = {"int8": 32}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass
class Target:
    """One place to measure: ``runtime`` locally, or the device profile ``device`` (optionally ``host``)."""

    name: str
    runtime: str
    precision: str = "fp32"
    threads: int | None = None
    options: dict = field(default_factory=dict)
    device: str | None = None  # device profile name or path: measured remotely through edgeprune.devices
    host: str | None = None
    channel_multiple: int | None = None

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name or ""):
            raise InvalidConfigError(f"target name {self.name!r} must be letters, digits, '.', '_' or '-'")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise InvalidConfigError(
                f"target '{self.name}': threads must be a positive int, got {self.threads!r}"
            )

    @property
    def remote(self) -> bool:
        return self.device is not None

    @property
    def multiple(self) -> int:
        """The channel multiple this target's kernels prefer (profile value, else a default)."""
        if self.channel_multiple:
            return int(self.channel_multiple)
        return DEFAULT_CHANNEL_MULTIPLE.get(self.precision, 8)

    def to_dict(self) -> dict:
        return asdict(self)

    def measure_key(self) -> dict:
        """Fields that change a measurement (the name does not)."""
        d = self.to_dict()
        d.pop("name")
        d.pop("channel_multiple")
        return d

    def device_profile(self) -> Any:
        """The device profile run with this target's runtime, precision, threads and options: what the
        agent measures with (``target_from_config`` fills them from the profile, then the config's
        overrides)."""
        from edgeprune.devices.profile_schema import load_profile

        if not self.remote:
            raise InvalidConfigError(f"target '{self.name}' names no device (it runs {self.runtime} locally)")
        return replace(load_profile(self.device), runtime=self.runtime, precision=self.precision,
                       threads=self.threads, runtime_options=dict(self.options))

    def describe(self) -> str:
        t = f"threads {self.threads}" if self.threads else "default threads"
        where = (
            f"device '{self.device}'" + (f" at {self.host}" if self.host else "") if self.remote else "local"
        )
        return f"{self.runtime} {self.precision}, {t}, {where}"


# Options applied to local targets unless the config sets them. ONNX Runtime's intra-op threads spin-wait
# after each run; when several candidates' sessions are measured interleaved in one process, the idle
# sessions' spinning threads steal the cores from the one being timed. Measured here (2 cores, 4 demo
# candidates, 2 threads): medians 16.2/13.0/9.8/10.4 ms with CoV 0.40 and a false inversion, versus
# 10.0/8.4/7.0/6.1 ms with CoV 0.05 without spinning.
MEASUREMENT_DEFAULTS: dict[str, dict] = {"onnxruntime": {"allow_spinning": False}}


def target_from_config(entry: Any) -> Target:
    """A Target from ``{name, runtime, precision, threads, options}`` or ``{device, host}``."""
    if isinstance(entry, Target):
        return entry
    if isinstance(entry, str):
        entry = {"runtime": entry}
    if not isinstance(entry, Mapping):
        raise InvalidConfigError(f"a target must be a mapping or a runtime name, got {entry!r}")
    known = {"name", "runtime", "precision", "threads", "options", "device", "host", "channel_multiple"}
    unknown = set(entry) - known
    if unknown:
        raise InvalidConfigError(
            f"target {dict(entry)}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}"
        )
    if "device" in entry:
        from edgeprune.devices.profile_schema import load_profile

        prof = load_profile(entry["device"])
        return Target(
            name=str(entry.get("name") or prof.name),
            runtime=str(entry.get("runtime") or prof.runtime),
            precision=str(entry.get("precision") or prof.precision),
            threads=entry.get("threads", prof.threads),
            options={**prof.runtime_options, **(entry.get("options") or {})},
            device=str(entry["device"]),
            host=entry.get("host") or (prof.ssh.host if prof.ssh else None),
            channel_multiple=int(entry.get("channel_multiple") or prof.channel_multiple),
        )
    if "runtime" not in entry:
        raise InvalidConfigError(f"target {dict(entry)} needs 'runtime' (or 'device')")
    runtime = str(entry["runtime"])
    precision = str(entry.get("precision", "fp32"))
    threads = entry.get("threads")
    name = entry.get("name") or f"{runtime}-{precision}" + (f"-t{threads}" if threads else "")
    return Target(
        name=str(name),
        runtime=runtime,
        precision=precision,
        threads=threads,
        options={**MEASUREMENT_DEFAULTS.get(runtime, {}), **(entry.get("options") or {})},
        channel_multiple=entry.get("channel_multiple"),
    )


def targets_from_config(entries: Any) -> list[Target]:
    """Targets from a list of config entries; names must be unique."""
    if not isinstance(entries, (list, tuple)) or not entries:
        raise InvalidConfigError("'targets' must be a non-empty list")
    targets = [target_from_config(e) for e in entries]
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise InvalidConfigError(f"two targets are named '{t.name}'; give them distinct 'name's")
        seen.add(t.name)
    return targets


def conv_channels(onnx_path: str) -> list[int]:
    """Output channel count of every Conv in graph order (from the weight initializers)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    return [
        shapes[n.input[1]][0]
        for n in model.graph.node
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in shapes
    ]


def inversion_advice(onnx_path: str, target: Target, reference_onnx: str | None = None) -> str:
    """What rounding removes a latency inversion on ``target``, from the candidate's channel counts.

    Only pruned convs count (those whose channels differ from ``reference_onnx``, the unpruned
    candidate, when its convs line up); the detection outputs keep their size on purpose.
    """
    m = target.multiple
    counts = conv_channels(onnx_path)
    ref = conv_channels(reference_onnx) if reference_onnx else []
    pruned = [c for k, c in enumerate(counts) if c != ref[k]] if len(ref) == len(counts) else counts
    off = sorted({c for c in pruned if c % m})
    n_off = sum(1 for c in pruned if c % m)
    if n_off == 0:
        return (
            f"all {len(pruned)} pruned conv channel counts are already multiples of {m}; the step may come "
            f"from a coarser kernel tile - try round_to={2 * m}"
        )
    return (
        f"{n_off} of {len(pruned)} pruned convs have channel counts that are not multiples of {m} (e.g. "
        f"{', '.join(map(str, off[:6]))}); prune with round_to={m} (ep.plan(..., round_to={m})) "
        f"so every count is a multiple of {m}"
    )
