"""The YAML config of ``edgeprune prune``: validation (errors name the field) and object builders.

```yaml
model: {builtin: yolov7_tiny, num_classes: 5, weights: best.pt}   # or: model: demo
                                                                   # or: {python: "pkg.mod:factory"}
                                  # (a module next to this file is found without PYTHONPATH)
                                                                   # or: model: best.pt (ep.models.load)
data: {train: data/train, val: data/val, img_size: 320}   # or {yaml: data.yaml, img_size: 320}:
                                                # an Ultralytics-style data YAML (path, train, val, names)
evaluator: {kind: detection, settings: {}}          # or kind: fidelity (vs the unpruned model)
finetune: {kind: labeled, steps: 100, lr: 0.0005, batch: 16, settings: {}}   # or kind: distill
targets: {iterations: 5, param_sparsity: null, flops_sparsity: null, metric_floor: null}
selection: {k: 20, n_params: 6, n_flops: 5, n_latency: 0, rates: [0.25, 0.5, 0.75], criterion: l2,
            round_to: 8}
latency: {targets: [{runtime: openvino, threads: 2}], cache_dir: latency_cache, until_knee: false,
          knee_tau: 0.03, snap: true}     # optional: latency models measured on each target
                                          # per_target: true (or [names]): one run per target into
                                          # run_dir/<name>/, N x the pruning time
run_dir: runs/prune
workers: 2          # sensitivity worker processes (default: all cores), one torch thread each
executor: {kind: ray, address: auto}   # or kind: local (default) / serial; ray also takes
                                       # num_cpus, num_gpus (auto: 1 per task if the cluster has GPUs),
                                       # max_retries; address: auto | local | host:port | ray://host:port
threads: 1          # torch threads of the main process (fine-tuning, evaluation); default: torch's
seed: 0
```
Relative paths are resolved against the folder of the config file.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeprune.errors import InvalidConfigError

_SECTIONS = {
    "model": {"builtin", "num_classes", "names", "python", "weights", "kwargs", "path"},
    "data": {"train", "val", "img_size", "yaml"},
    "evaluator": {"kind", "settings"},
    "finetune": {"kind", "steps", "lr", "batch", "settings"},
    "targets": {"iterations", "param_sparsity", "flops_sparsity", "metric_floor"},
    "selection": {"k", "n_params", "n_flops", "n_latency", "rates", "criterion", "round_to"},
    "executor": {"kind", "workers", "address", "num_cpus", "num_gpus", "max_retries"},
    "latency": {"targets", "cache_dir", "until_knee", "knee_tau", "snap", "per_target"},
}
_SCALARS = {"run_dir", "workers", "threads", "seed"}
_BUILTINS = ("yolov7", "yolov7_tiny", "demo")


@dataclass
class PruneConfig:
    """A validated ``edgeprune prune`` config; paths already resolved."""

    raw: dict
    base: Path

    def section(self, name: str) -> dict:
        return self.raw.get(name) or {}

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base / p)

    @property
    def run_dir(self) -> Path:
        return self.path(self.raw["run_dir"])


def _fail(field: str, msg: str) -> InvalidConfigError:
    return InvalidConfigError(f"config field '{field}': {msg}")


def _typed(d: dict, section: str, key: str, types: tuple, check: Callable[[Any], bool] | None = None,
           what: str = "") -> None:
    if key not in d or d[key] is None:
        return
    v = d[key]
    if isinstance(v, bool) and bool not in types or not isinstance(v, types) or (check and not check(v)):
        what = what or " or ".join(t.__name__ for t in types)
        raise _fail(f"{section}.{key}" if section else key, f"expected {what}, got {v!r}")


def validate(raw: Any, base: Path) -> PruneConfig:
    """Check a parsed YAML config; raise ``InvalidConfigError`` naming the first bad field."""
    if not isinstance(raw, dict):
        raise InvalidConfigError("config must be a YAML mapping with sections model, data, evaluator, ...")
    unknown = sorted(set(raw) - set(_SECTIONS) - _SCALARS)
    if unknown:
        known = sorted(set(_SECTIONS) | _SCALARS)
        raise InvalidConfigError(f"unknown config field(s) {unknown}; known: {known}")
    for key in ("model", "data", "evaluator", "finetune", "targets", "run_dir"):
        if raw.get(key) in (None, "", {}):
            raise _fail(key, "is required")
    if raw["model"] == "demo":
        raw = {**raw, "model": {"builtin": "demo"}}
    elif isinstance(raw["model"], str):  # a checkpoint or model YAML for ep.models.load
        raw = {**raw, "model": {"path": raw["model"]}}
    if isinstance(raw["data"], str):  # data: data.yaml
        raw = {**raw, "data": {"yaml": raw["data"]}}
    for name, allowed in _SECTIONS.items():
        sec = raw.get(name)
        if sec is None:
            continue
        if not isinstance(sec, dict):
            raise _fail(name, f"must be a mapping, got {sec!r}")
        bad = sorted(set(sec) - allowed)
        if bad:
            raise _fail(f"{name}.{bad[0]}", f"unknown key; allowed: {sorted(allowed)}")
    m = raw["model"]
    if sum(k in m for k in ("builtin", "python", "path")) != 1:
        raise _fail("model", "give exactly one of 'builtin' (yolov7, yolov7_tiny, demo), "
                    "'python' (module:function) or 'path' (a checkpoint: model: best.pt)")
    _typed(m, "model", "path", (str,))
    if "builtin" in m and m["builtin"] not in _BUILTINS:
        raise _fail("model.builtin", f"unknown model {m['builtin']!r}; choose one of {list(_BUILTINS)}")
    if "python" in m and (not isinstance(m["python"], str) or ":" not in m["python"]):
        raise _fail("model.python", f"expected 'module:function', got {m['python']!r}")
    _typed(m, "model", "num_classes", (int,), lambda v: v >= 1, "a positive integer")
    _typed(m, "model", "weights", (str,))
    d = raw["data"]
    _typed(d, "data", "img_size", (int,), lambda v: v >= 32 and v % 32 == 0, "a multiple of 32")
    if "img_size" not in d and m.get("builtin") != "demo":
        raise _fail("data.img_size", "is required (except for the demo model, which knows its own)")
    ev, ft = raw["evaluator"], raw["finetune"]
    if ev.get("kind") not in ("detection", "fidelity"):
        raise _fail("evaluator.kind", f"expected 'detection' or 'fidelity', got {ev.get('kind')!r}")
    if ft.get("kind") not in ("labeled", "distill"):
        raise _fail("finetune.kind", f"expected 'labeled' or 'distill', got {ft.get('kind')!r}")
    if "yaml" in d:
        if not isinstance(d["yaml"], str) or not (base / Path(d["yaml"]).expanduser()).is_file():
            raise _fail("data.yaml", f"file {d['yaml']!r} not found (relative to {base})")
        if "train" in d or "val" in d:
            raise _fail("data", "give either 'yaml' (its train and val splits) or 'train' and 'val' folders")
        if raw["finetune"].get("kind") == "distill" or raw["evaluator"].get("kind") == "fidelity":
            raise _fail("data.yaml", "distillation and fidelity read image folders: give data.train and "
                        "data.val folders instead")
    for key in ("train", "val") if "yaml" not in d else ():  # train feeds fine-tuning, val the evaluator
        if not isinstance(d.get(key), str):
            raise _fail(f"data.{key}", "is required (a folder path)")
        folder = Path(d[key]).expanduser()
        folder = folder if folder.is_absolute() else base / folder
        if not folder.is_dir():
            raise _fail(f"data.{key}", f"folder {folder} does not exist")
    for sec, key in (("evaluator", "settings"), ("finetune", "settings")):
        _typed(raw[sec], sec, key, (dict,), what="a mapping")
    _typed(ft, "finetune", "steps", (int,), lambda v: v >= 0, "an integer >= 0")
    _typed(ft, "finetune", "lr", (float, int), lambda v: v > 0, "a positive number")
    _typed(ft, "finetune", "batch", (int,), lambda v: v >= 1, "a positive integer")
    t = raw["targets"]
    _typed(t, "targets", "iterations", (int,), lambda v: v >= 1, "a positive integer")
    for key in ("param_sparsity", "flops_sparsity"):
        _typed(t, "targets", key, (float, int), lambda v: 0 < v < 1, "a fraction between 0 and 1")
    _typed(t, "targets", "metric_floor", (float, int))
    lat = raw.get("latency") or {}
    if all(t.get(k) is None for k in _SECTIONS["targets"]) and not lat.get("until_knee"):
        raise _fail("targets", "give at least one of iterations, param_sparsity, flops_sparsity, "
                    "metric_floor")
    s = raw.get("selection") or {}
    _typed(s, "selection", "k", (float, int), lambda v: v >= 0, "a number >= 0")
    for key in ("n_params", "n_flops", "n_latency"):
        _typed(s, "selection", key, (int,), lambda v: v >= 0, "an integer >= 0")
    _check_latency(lat, s)
    _typed(s, "selection", "round_to", (int,), lambda v: v >= 1, "a positive integer")
    _typed(s, "selection", "rates", (list,), lambda v: bool(v) and all(
        isinstance(r, (int, float)) and not isinstance(r, bool) and 0 < r < 1 for r in v),
        "a non-empty list of fractions between 0 and 1")
    from edgeprune.pruning.importance import CRITERIA  # imports torch; only reached once YAML parsed

    _typed(s, "selection", "criterion", (str,), lambda v: v in CRITERIA, f"one of {list(CRITERIA)}")
    _typed(raw, "", "workers", (int,), lambda v: v >= 1, "a positive integer")
    _check_executor(raw.get("executor") or {})
    _typed(raw, "", "threads", (int,), lambda v: v >= 1, "a positive integer")
    _typed(raw, "", "seed", (int,))
    _typed(raw, "", "run_dir", (str,))
    return PruneConfig(raw, base)


def _check_executor(e: dict) -> None:
    from edgeprune.iterative.executors import EXECUTOR_KINDS
    from edgeprune.iterative.ray_executor import validate_address

    _typed(e, "executor", "kind", (str,), lambda v: v in EXECUTOR_KINDS, f"one of {list(EXECUTOR_KINDS)}")
    _typed(e, "executor", "workers", (int,), lambda v: v >= 1, "a positive integer")
    _typed(e, "executor", "num_cpus", (int, float), lambda v: v > 0, "a positive number")
    _typed(e, "executor", "num_gpus", (int, float, str), lambda v: v == "auto" or (
        not isinstance(v, str) and v >= 0), "'auto' or a number >= 0")
    _typed(e, "executor", "max_retries", (int,), lambda v: v >= 0, "an integer >= 0")
    kind = e.get("kind") or "local"
    ray_only = sorted(k for k in ("address", "num_cpus", "num_gpus", "max_retries") if e.get(k) is not None)
    if kind != "ray" and ray_only:
        raise _fail(f"executor.{ray_only[0]}", f"applies to kind: ray only (kind is {kind!r})")
    if kind != "local" and e.get("workers") is not None:
        raise _fail("executor.workers", f"applies to kind: local only (kind is {kind!r})")
    if e.get("address") is not None:
        try:
            validate_address(e["address"])
        except InvalidConfigError as exc:
            raise _fail("executor.address", str(exc)) from None


def _check_latency(lat: dict, sel: dict) -> None:
    """The optional ``latency`` section: targets to measure latency models on, and how to use them."""
    if (sel.get("n_latency") or lat.get("until_knee")) and not lat.get("targets"):
        raise _fail("latency.targets", "is required for selection.n_latency or latency.until_knee "
                    "(e.g. [{runtime: openvino, threads: 2}])")
    _typed(lat, "latency", "targets", (list,), lambda v: bool(v), "a non-empty list of targets")
    _typed(lat, "latency", "cache_dir", (str,))
    _typed(lat, "latency", "until_knee", (bool,))
    _typed(lat, "latency", "snap", (bool,))
    _typed(lat, "latency", "knee_tau", (float, int), lambda v: 0 <= v < 1, "a fraction in [0, 1)")
    per = lat.get("per_target")
    if per not in (None, False, True) and not (isinstance(per, list) and per and all(
            isinstance(n, str) for n in per)):
        raise _fail("latency.per_target", f"expected true or a non-empty list of target names, got {per!r}")
    if per and not lat.get("targets"):
        raise _fail("latency.per_target", "needs latency.targets: a latency model per target drives each "
                    "target's own run (e.g. targets: [{runtime: openvino, threads: 2}])")
    if lat.get("targets"):
        from edgeprune.deploy.targets import targets_from_config

        names = [t.name for t in targets_from_config(lat["targets"])]  # names the bad entry
        unknown = [n for n in per if n not in names] if isinstance(per, list) else []
        if unknown:
            raise _fail("latency.per_target", f"unknown target(s) {unknown}; latency.targets are {names}")


def latency_models(cfg: PruneConfig, model: Any, example_inputs: Any) -> list:
    """One latency model per ``latency.targets`` entry (measured, or read from ``latency.cache_dir``)."""
    lat = cfg.section("latency")
    if not lat.get("targets"):
        return []
    from edgeprune.deploy.predicted import build_models
    from edgeprune.deploy.targets import targets_from_config

    targets = targets_from_config(lat["targets"])
    models = build_models(targets, model, example_inputs, cfg.path(lat.get("cache_dir") or "latency_cache"))
    missing = [t.name for t in targets if t.name not in models]
    if missing:
        raise _fail("latency.targets", f"no latency model could be built for {missing}")
    return [models[t.name] for t in targets]


def load_config(path: str | Path) -> PruneConfig:
    """Read and validate a YAML config file."""
    from edgeprune.fileio import read_yaml_config

    return validate(*read_yaml_config(path))


def model_factory(cfg: PruneConfig) -> Callable[[], Any]:
    """A zero-argument callable building the unpruned model (weights loaded) the config describes."""
    m = cfg.section("model")
    weights = cfg.path(m["weights"]) if m.get("weights") else None
    if weights is not None and not weights.is_file():
        raise _fail("model.weights", f"file {weights} not found")
    model_path: Any = None
    if m.get("path"):
        model_path = cfg.path(m["path"])
        if not model_path.is_file():
            bare = "/" not in m["path"] and model_path.suffix in (".yaml", ".yml")
            if not bare:  # a bare *.yaml name is one Ultralytics ships (yolov8n.yaml)
                raise _fail("model.path", f"file {model_path} not found")
            model_path = m["path"]

    def build() -> Any:
        import edgeprune.models as models

        if m.get("builtin") == "demo":
            model = models.demo_model()
        elif "path" in m:
            model = models.load(model_path, num_classes=m.get("num_classes"))
        elif "builtin" in m:
            kwargs = {"num_classes": m.get("num_classes", 80), **(m.get("kwargs") or {})}
            if m.get("names"):
                kwargs["names"] = list(m["names"])
            model = getattr(models, m["builtin"])(**kwargs)
        else:
            mod_name, _, fn_name = m["python"].partition(":")
            _importable_from(cfg.base, mod_name)
            try:
                fn = getattr(importlib.import_module(mod_name), fn_name)
            except (ImportError, AttributeError) as exc:
                raise _fail("model.python", f"cannot import {m['python']!r}: {exc}") from exc
            model = fn(**(m.get("kwargs") or {}))
        if weights is not None:
            from edgeprune.weights_io import load_weights

            load_weights(model, weights)
        return model.eval()

    return build


def _importable_from(base: Path, mod_name: str) -> None:
    """Put the config's folder first on sys.path when the module lives there (no PYTHONPATH needed).

    sys.path is what spawned worker processes inherit, so they find the module too.
    """
    top = mod_name.split(".")[0]
    if (base / f"{top}.py").is_file() or (base / top / "__init__.py").is_file():
        folder = str(base.resolve())
        if folder not in sys.path:
            sys.path.insert(0, folder)


def img_size(cfg: PruneConfig, model: Any) -> int:
    """The input size: ``data.img_size``, else the model's own ``img_size`` (demo model)."""
    size = cfg.section("data").get("img_size") or getattr(model, "img_size", None)
    if not size:
        raise _fail("data.img_size", "is required for this model")
    return int(size)


def build_evaluator(cfg: PruneConfig, teacher: Any, size: int) -> Any:
    """``DetectionEvaluator`` on data.val, or ``FidelityEvaluator`` against the unpruned ``teacher``."""
    from edgeprune import evaluation

    ev, data = cfg.section("evaluator"), cfg.section("data")
    settings = dict(ev.get("settings") or {})
    val = cfg.path(data["yaml"] if "yaml" in data else data["val"])  # a data YAML: its val split
    try:
        if ev["kind"] == "detection":
            return evaluation.DetectionEvaluator(val, size, **settings)
        images = val / "images" if (val / "images").is_dir() else val
        return evaluation.FidelityEvaluator(teacher, images, size, **settings)
    except TypeError as exc:
        raise _fail("evaluator.settings", str(exc)) from exc


def build_finetune(cfg: PruneConfig, teacher: Any, size: int) -> Any:
    """``LabeledFinetune`` on data.train, or ``DistillFinetune`` from the unpruned ``teacher``."""
    from edgeprune import training

    ft, data = cfg.section("finetune"), cfg.section("data")
    kwargs = dict(ft.get("settings") or {})
    if ft.get("lr") is not None:
        kwargs["lr"] = float(ft["lr"])
    if ft.get("batch") is not None:
        kwargs["batch_size"] = int(ft["batch"])
    train = cfg.path(data["yaml"] if "yaml" in data else data["train"])  # a data YAML: its train split
    try:
        if ft["kind"] == "labeled":
            if kwargs.get("distill"):  # settings: {distill: 1.0} adds distillation from the unpruned model
                kwargs["teacher"] = teacher
            return training.LabeledFinetune(train, size, **kwargs)
        images = train / "images" if (train / "images").is_dir() else train
        return training.DistillFinetune(teacher, images, size, **kwargs)
    except TypeError as exc:
        raise _fail("finetune.settings", str(exc)) from exc
