"""The YAML config of ``edgeprune sweep`` (errors name the field) and the pick evaluator.

```yaml
prune: prune.yaml        # an `edgeprune prune` config: gives model, run_dir, img_size and val data
run_prune: false         # true: run (or resume) that pruning first
# or, without a prune config:
run_dir: runs/prune
model: demo              # as in the prune config: demo | {builtin, num_classes, weights} | {python}
img_size: 320            # default: the prune config's data.img_size, else the size the run was
                         # pruned at (its run.json), else the model's img_size
targets:
  - {name: ort-2t, runtime: onnxruntime, precision: fp32, threads: 2}
  - {name: ov-2t, runtime: openvino, threads: 2}
  - {device: jetson-orin-nano, host: user@jetson}          # measured on the device over SSH
tau: 0.03
accuracy_floor: null      # absolute floor of the candidates' primary metric
accuracy_floor_rel: 0.9   # or relative to the unpruned model's metric (default 0.9 when neither is
                          # given and candidates carry metrics; 0 turns the floor off)
profile: {min_runs: 30, min_s: 2.0}          # runtimes.ProfileConfig fields
postprocess: {conf_thres: 0.25, iou_thres: 0.45}
evaluate_pick: {data: data/val, max_images: 200}   # re-measure each pick's mAP on the runtime output
out_dir: sweeps/run1
latency_cache: latency_cache   # optional: a latency model per target, predicted ms beside measured
refine: false             # true: interpolated plans between the two candidates around each knee
```
Relative paths are resolved against the folder of the config file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgeprune.errors import InvalidConfigError

KNOWN = {"prune", "run_prune", "run_dir", "model", "img_size", "targets", "tau", "accuracy_floor",
         "accuracy_floor_rel", "profile", "postprocess", "evaluate_pick", "out_dir", "latency_cache",
         "refine"}


@dataclass
class SweepConfig:
    """A validated sweep config; ``base`` is the config file's folder."""

    raw: dict
    base: Path

    def path(self, value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base / p


def _fail(field: str, msg: str) -> InvalidConfigError:
    return InvalidConfigError(f"sweep config: '{field}' {msg}")


def validate(raw: Any, base: Path) -> SweepConfig:
    """Check a parsed YAML sweep config; ``InvalidConfigError`` names the first bad field."""
    if not isinstance(raw, dict):
        raise InvalidConfigError("sweep config must be a YAML mapping (run_dir/prune, targets, out_dir, ...)")
    unknown = sorted(set(raw) - KNOWN)
    if unknown:
        raise InvalidConfigError(f"sweep config: unknown field(s) {unknown}; known: {sorted(KNOWN)}")
    if not raw.get("prune") and not (raw.get("run_dir") and raw.get("model")):
        raise _fail("prune", "or both 'run_dir' and 'model' are required")
    for key in ("targets", "out_dir"):
        if not raw.get(key):
            raise _fail(key, "is required")
    for key in ("tau", "accuracy_floor", "accuracy_floor_rel"):
        v = raw.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0):
            raise _fail(key, f"must be a number >= 0, got {v!r}")
    for key in ("profile", "postprocess", "evaluate_pick"):
        if raw.get(key) is not None and not isinstance(raw[key], dict):
            raise _fail(key, f"must be a mapping, got {raw[key]!r}")
    if raw.get("postprocess") is not None:
        from edgeprune.errors import BundleError
        from edgeprune.runtimes.bundle import check_postprocess

        try:  # checked now: a bad threshold would otherwise surface only when the bundle is loaded
            check_postprocess(raw["postprocess"], "sweep config")
        except BundleError as e:
            raise InvalidConfigError(str(e)) from None
    if raw.get("evaluate_pick") and "data" not in raw["evaluate_pick"]:
        raise _fail("evaluate_pick.data", "is required (a YOLO-format dataset folder or data YAML)")
    if raw.get("refine") is not None and not isinstance(raw["refine"], bool):
        raise _fail("refine", f"must be true or false, got {raw['refine']!r}")
    if raw.get("latency_cache") is not None and not isinstance(raw["latency_cache"], str):
        raise _fail("latency_cache", f"must be a folder path, got {raw['latency_cache']!r}")
    size = raw.get("img_size")
    if size is not None and (not isinstance(size, int) or size % 32):
        raise _fail("img_size", f"must be an int multiple of 32, got {size!r}")
    return SweepConfig(raw, base)


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a sweep YAML file."""
    from edgeprune.fileio import read_yaml_config

    return validate(*read_yaml_config(path))


def resolve_run(cfg: SweepConfig, fresh_prune: bool = False) -> tuple[Path, Callable[[], Any], int | None]:
    """(run_dir, model_factory, img_size) from the prune config (running it if asked) or run_dir + model."""
    from edgeprune.iterative import config as prune_config

    if cfg.raw.get("prune"):
        ppath = cfg.path(cfg.raw["prune"])
        pcfg = prune_config.load_config(ppath)
        if cfg.raw.get("run_prune"):
            from edgeprune.iterative.run_config import run_prune_config

            run_prune_config(pcfg, fresh=fresh_prune)
        size = cfg.raw.get("img_size") or pcfg.section("data").get("img_size")
        return pcfg.run_dir, prune_config.model_factory(pcfg), size
    model = cfg.raw["model"]
    model = {"builtin": "demo"} if model == "demo" else model
    if not isinstance(model, dict):
        raise _fail("model", f"must be 'demo' or a mapping like the prune config's, got {model!r}")
    pcfg = prune_config.PruneConfig({"model": model, "run_dir": cfg.raw["run_dir"]}, cfg.base)
    return pcfg.run_dir, prune_config.model_factory(pcfg), cfg.raw.get("img_size")


def bundle_predict_fn(detector: Any) -> Callable:
    """A ``predict_fn`` ([B,3,S,S] float32 -> [B,N,5+nc]) running a bundle's session image by image."""
    import numpy as np

    name = detector.input_name

    def predict(batch: Any) -> Any:
        x = np.asarray(batch, dtype=np.float32)
        return np.concatenate([detector.session.infer({name: x[i : i + 1]})[0] for i in range(x.shape[0])])

    return predict


class DatasetPickEvaluator:
    """Evaluator of a bundle Detector: mAP of the runtime's raw output on a YOLO dataset."""

    def __init__(self, data: str | Path, img_size: int, max_images: int | None = None) -> None:
        self.data, self.img_size, self.max_images = str(data), int(img_size), max_images

    def settings(self) -> dict:
        return {"data": self.data, "img_size": self.img_size, "max_images": self.max_images}

    def __call__(self, detector: Any) -> dict:
        from edgeprune.data import YoloDataset
        from edgeprune.evaluation.detection import evaluate_predictions

        ds = YoloDataset(self.data, self.img_size)
        layout = detector.io.output_layout if hasattr(detector, "io") else "cxcywh_obj_cls"
        return evaluate_predictions(ds, bundle_predict_fn(detector), batch_size=1, max_images=self.max_images,
                                    layout=layout)
