"""A latency model of one model on one target, measured on the target itself.

Each conv layer is profiled alone at its real input size over a few output channel counts (input at
full width) and a few input channel counts (output at full width), the counts of each sweep measured
side by side; a layer at ``(cin, cout)`` is predicted as ``base x r_out(cout) x r_in(cin)`` (a conv's
cost is a product in its two channel counts; each factor keeps the target's own staircase at the
measured counts). The whole model is then measured unpruned and uniformly pruned, side by side, and
``predicted = fixed_ms + alpha x sum(layers)`` is fitted to those two points: ``fixed_ms`` holds what
pruning does not shrink (head, pre/post, launch overheads), ``alpha`` what the single convs miss
(fusion, caches). Where the whole model speeds up *more* than its layers measured alone (a negative
fixed part: on these CPUs a pruned model's activations start fitting in cache), the two points are
fitted by ``predicted = alpha x sum(layers) ** beta`` instead (``beta > 1``, ``fixed_ms = 0``).

Predictions guide the search; the final choice is always measured side by side (``edgeprune.deploy``).

The measurements are cached on disk (one JSON per target key: runtime, its version, precision,
threads, options, device, input size, grid), written atomically after every layer so an interrupted
build resumes; any change of a key part selects another file, so stale numbers are never used.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.errors import EdgepruneError
from edgeprune.fileio import read_json, write_json
from edgeprune.latency.layers import (
    ConvLayer,
    channels_after,
    channels_of_model,
    conv_layers,
    conv_onnx,
    convs_of_onnx,
    grid,
    onnx_order,
)

CACHE_FORMAT = 1
OUT_FRACTIONS = (0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125)
IN_FRACTIONS = (0.75, 0.5, 0.25)
CALIBRATION_SPARSITY = 0.5


def _interp(table: Mapping[int, float], c: int) -> float:
    """Ratio at ``c`` from the measured counts: linear between them, proportional below the smallest."""
    ks = sorted(table)
    if c <= ks[0]:
        return table[ks[0]] * c / ks[0]
    if c >= ks[-1]:
        return table[ks[-1]] * c / ks[-1]
    return float(np.interp(c, ks, [table[k] for k in ks]))


@dataclass
class LayerTable:
    """One layer's measurement: ms at full width, and ratios over output / input channel counts."""

    base_ms: float
    out_ratio: dict[int, float]
    in_ratio: dict[int, float]

    def ms(self, cin: int, cout: int, layer: ConvLayer) -> float:
        if not layer.prunable_axes:
            return self.base_ms
        if layer.depthwise:  # one axis: input and output channels move together
            return self.base_ms * _interp(self.out_ratio, cout)
        return self.base_ms * _interp(self.out_ratio, cout) * _interp(self.in_ratio, cin)

    def to_dict(self) -> dict:
        return {"base_ms": self.base_ms, "out_ratio": {str(k): v for k, v in self.out_ratio.items()},
                "in_ratio": {str(k): v for k, v in self.in_ratio.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> LayerTable:
        return cls(float(d["base_ms"]), {int(k): float(v) for k, v in d["out_ratio"].items()},
                   {int(k): float(v) for k, v in d["in_ratio"].items()})


@dataclass
class LatencyModel:
    """Predicts a candidate's latency (ms) on one target from its conv channel counts."""

    key: dict
    layers: list[ConvLayer]
    tables: list[LayerTable]
    alpha: float
    fixed_ms: float
    calibration: dict = field(default_factory=dict)  # the measured whole-model points
    multiple: int = 8
    name: str = ""
    onnx_order: list[int] | None = None  # layer index of each Conv node of an exported candidate
    beta: float = 1.0  # exponent on the layer sum (1: the linear fit)

    @property
    def base_channels(self) -> list[tuple[int, int]]:
        return [(layer.cin, layer.cout) for layer in self.layers]

    def layer_sum(self, channels: Sequence[tuple[int, int]]) -> float:
        """Sum of the per-layer predictions (ms), before calibration."""
        if len(channels) != len(self.layers):
            raise EdgepruneError(f"expected channel counts of {len(self.layers)} conv layers, "
                                 f"got {len(channels)}")
        return float(sum(t.ms(ci, co, la) for t, la, (ci, co) in zip(self.tables, self.layers, channels)))

    def predict(self, channels: Sequence[tuple[int, int]] | None = None) -> float:
        """Predicted latency (ms) of the model with these (cin, cout) per layer (default: unpruned)."""
        return self.fixed_ms + self.alpha * self.layer_sum(channels or self.base_channels) ** self.beta

    def predict_model(self, model: Any) -> float:
        """Predicted latency of a (pruned) PyTorch model of the same architecture."""
        return self.predict(channels_of_model(model, self.layers))

    def predict_onnx(self, path: str | Path) -> float | None:
        """Predicted latency of a candidate's ONNX file; None when its convs do not match the layers."""
        ch = convs_of_onnx(path, self.layers, self.onnx_order)
        return None if ch is None else self.predict(ch)

    def predict_removal(self, current: Sequence[tuple[int, int]], graph: Any,
                        removed: Mapping[str, int]) -> float:
        """Predicted latency after removing ``removed[group]`` channels from the model at ``current``."""
        return self.predict(channels_after(self.layers, current, graph, removed))

    def group_curve(self, current: Sequence[tuple[int, int]], graph: Any, group: str,
                    counts: Sequence[int]) -> dict[int, float]:
        """Predicted latency per channel count kept by ``group`` (others as in ``current``)."""
        now = graph.group(group).channels
        return {c: self.predict_removal(current, graph, {group: now - c}) for c in counts}

    def to_dict(self) -> dict:
        return {"key": self.key, "alpha": self.alpha, "fixed_ms": self.fixed_ms,
                "calibration": self.calibration, "multiple": self.multiple, "name": self.name,
                "onnx_order": self.onnx_order, "beta": self.beta,
                "layers": [la.to_dict() for la in self.layers], "tables": [t.to_dict() for t in self.tables]}

    @classmethod
    def from_dict(cls, d: Mapping) -> LatencyModel:
        return cls(d["key"], [ConvLayer.from_dict(x) for x in d["layers"]],
                   [LayerTable.from_dict(x) for x in d["tables"]], float(d["alpha"]), float(d["fixed_ms"]),
                   dict(d.get("calibration") or {}), int(d.get("multiple", 8)), str(d.get("name", "")),
                   d.get("onnx_order"), float(d.get("beta", 1.0)))


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class LatencyCache:
    """One JSON file per cache key under ``folder``: layer tables by signature, calibrations by model."""

    def __init__(self, folder: str | Path | None, key: dict, label: str = "target") -> None:
        self.key = key
        slug = re.sub(r"[^A-Za-z0-9._-]", "_", label)[:40]
        self.path = None if folder is None else Path(folder) / f"{slug}-{_sha(key)[:16]}.json"
        self.data: dict = {"format": CACHE_FORMAT, "key": key, "layers": {}, "calibration": {}}
        if self.path is not None and self.path.exists():
            try:
                old = read_json(self.path)
            except (OSError, ValueError):
                old = {}
            if old.get("format") == CACHE_FORMAT and old.get("key") == key:  # else stale: start over
                self.data = old

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, self.data)


def _measure_layer(layer: ConvLayer, weight: np.ndarray | None, profiler: Any, multiple: int,
                   tmp: Path) -> LayerTable:
    """Profile one layer over its output-count and input-count sweeps (each side by side)."""
    if not layer.prunable_axes:
        f = conv_onnx(layer, layer.cin, layer.cout, weight, tmp / "fixed.onnx")
        return LayerTable(profiler.measure({"fixed": f})["fixed"], {layer.cout: 1.0}, {layer.cin: 1.0})
    outs = grid(layer.cout, multiple, OUT_FRACTIONS)
    files = {}
    for c in outs:
        cin = c if layer.depthwise else layer.cin
        files[f"o{c}"] = conv_onnx(layer, cin, c, weight, tmp / f"o{c}.onnx")
    got = profiler.measure(files)
    base = got[f"o{layer.cout}"]
    out_ratio = {c: got[f"o{c}"] / base for c in outs}
    in_ratio = {layer.cin: 1.0}
    if not layer.depthwise:
        ins = grid(layer.cin, multiple, IN_FRACTIONS)
        if len(ins) > 1:
            files = {f"i{c}": conv_onnx(layer, c, layer.cout, weight, tmp / f"i{c}.onnx") for c in ins}
            got_in = profiler.measure(files)
            in_ratio = {c: got_in[f"i{c}"] / got_in[f"i{layer.cin}"] for c in ins}
            base = (base + got_in[f"i{layer.cin}"]) / 2  # the full-width layer was timed in both passes
    return LayerTable(base, out_ratio, in_ratio)


MAX_BETA = 3.0  # beyond this the two points are more likely noise than a law


def _fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """``(alpha, fixed_ms, beta)`` through two (layer sum S, measured T) points.

    ``T = fixed + alpha x S`` when that needs no negative part; when the whole model shrinks faster
    than its layers (``fixed`` would be negative), ``T = alpha x S ** beta`` through both points;
    with one point (or degenerate ones), ``T = alpha x S``.
    """
    (s0, t0) = points[0]
    if len(points) > 1:
        s1, t1 = points[1]
        if abs(s0 - s1) > 1e-9 * max(s0, s1) and min(s0, s1, t0, t1) > 0:
            alpha = (t0 - t1) / (s0 - s1)
            fixed = t0 - alpha * s0
            if alpha > 0 and fixed >= 0:
                return alpha, fixed, 1.0
            beta = math.log(t0 / t1) / math.log(s0 / s1)
            if 1.0 < beta <= MAX_BETA:
                return t0 / s0 ** beta, 0.0, beta
    return t0 / s0, 0.0, 1.0


def _export(model: Any, x: Any, path: Path) -> None:
    """The whole model as the sweep exports it (a detector), or plainly (any other conv net)."""
    import edgeprune as ep
    from edgeprune.errors import InvalidModelError
    from edgeprune.export import _torch_export

    try:
        ep.export_onnx(model, x, path, verify=False)
    except InvalidModelError:
        _torch_export(model.eval(), x, path, 17)


def build_latency_model(model: Any, example_inputs: Any, profiler: Any, cache_dir: str | Path | None = None,
                        multiple: int = 8, name: str = "", progress: bool = True) -> LatencyModel:
    """Measure (or load from ``cache_dir``) the latency model of ``model`` on ``profiler``'s target."""
    import edgeprune as ep

    layers = conv_layers(model, example_inputs)
    xs = example_inputs if isinstance(example_inputs, (tuple, list)) else [example_inputs]
    shapes = [list(getattr(t, "shape", [])) for t in xs]
    key = {**profiler.key(), "input": shapes, "multiple": int(multiple),
           "out_fractions": list(OUT_FRACTIONS), "in_fractions": list(IN_FRACTIONS)}
    cache = LatencyCache(cache_dir, key, str(key.get("runtime") or "target"))  # shared by any target name
    todo = [la for la in dict.fromkeys(la.signature() for la in layers) if la not in cache.data["layers"]]
    by_sig = {la.signature(): la for la in layers}
    with tempfile.TemporaryDirectory(prefix="edgeprune-latency-") as tmp:
        for k, sig in enumerate(todo):
            layer = by_sig[sig]
            if progress:
                print(f"\r[edgeprune latency] {name or key.get('runtime')}: layer {k + 1}/{len(todo)} "
                      f"{sig}", end="", file=sys.stderr, flush=True)
            w = model.get_submodule(layer.name).weight.detach().float().numpy()
            d = Path(tmp) / str(k)
            cache.data["layers"][sig] = _measure_layer(layer, w, profiler, multiple, d).to_dict()
            cache.save()  # after every layer: an interrupted build resumes here
        if progress and todo:
            print(file=sys.stderr)
        tables = [LayerTable.from_dict(cache.data["layers"][la.signature()]) for la in layers]
        arch = _sha([type(model).__qualname__, [la.signature() for la in layers]])
        cal = cache.data["calibration"].get(arch)
        if cal is None:
            x = example_inputs
            files = {"unpruned": Path(tmp) / "unpruned.onnx"}
            _export(model.eval(), x, files["unpruned"])
            sums = {"unpruned": None}
            try:
                pruned = ep.prune(copy.deepcopy(model).eval(), x, sparsity=CALIBRATION_SPARSITY,
                                  round_to=multiple)
                files["pruned"] = Path(tmp) / "pruned.onnx"
                _export(pruned, x, files["pruned"])
                sums["pruned"] = channels_of_model(pruned, layers)
            except EdgepruneError:  # a model that cannot be pruned uniformly: one point (scale only)
                pass
            got = profiler.measure(files, whole=True)
            base = [(la.cin, la.cout) for la in layers]
            lm0 = LatencyModel(key, layers, tables, 1.0, 0.0)
            cal = {n: {"measured_ms": got[n], "layer_sum_ms": lm0.layer_sum(sums[n] or base)} for n in files}
            cal["onnx_order"] = onnx_order(files["unpruned"], layers)
            cache.data["calibration"][arch] = cal
            cache.save()
        if "onnx_order" not in cal:  # a cache written before node orders were kept
            _export(model.eval(), example_inputs, Path(tmp) / "order.onnx")
            cal["onnx_order"] = onnx_order(Path(tmp) / "order.onnx", layers)
            cache.save()
    pts = [(cal[n]["layer_sum_ms"], cal[n]["measured_ms"]) for n in ("unpruned", "pruned") if n in cal]
    alpha, fixed, beta = _fit(pts)
    points = {n: v for n, v in cal.items() if n != "onnx_order"}
    return LatencyModel(key, layers, tables, alpha, fixed, points, int(multiple), name, cal["onnx_order"],
                        beta)
