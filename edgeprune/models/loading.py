"""``ep.models.load(path)``: a user's detector checkpoint as an ``nn.Module`` edgeprune can prune.

The file's pickle is first scanned (nothing executed) to tell what it is:
- an official YOLOv7 / YOLOv7-tiny training checkpoint -> edgeprune's built-in model, weights mapped
  one to one, read with a restricted unpickler (no code in the file runs);
- an Ultralytics checkpoint (YOLOv5u, YOLOv8, YOLO11 detect) or model YAML -> Ultralytics' own
  loader (extra ``ultralytics``; it unpickles the file, so load only checkpoints you trust);
- anything else -> ``InvalidModelError`` naming what was found and what is supported.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from edgeprune.errors import InvalidModelError
from edgeprune.models.pickle_scan import data_pickle, pickle_globals

SUPPORTED = ("official YOLOv7/YOLOv7-tiny training checkpoints (best.pt/last.pt), Ultralytics YOLOv5u/YOLOv8/"
             "YOLO11 detection checkpoints and model YAMLs (extra 'ultralytics')")


def checkpoint_kind(path: str | os.PathLike) -> str:
    """``"yolov7-official"``, ``"ultralytics"`` or ``"ultralytics-yaml"``; ``InvalidModelError`` otherwise."""
    from edgeprune.models.yolov7_checkpoint import is_official_yolov7, unknown_globals

    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        return "ultralytics-yaml"  # a file, or a name Ultralytics ships (yolov8n.yaml): never downloaded
    found = pickle_globals(data_pickle(p))
    if is_official_yolov7(found):
        extra = unknown_globals(found)
        if extra:
            raise InvalidModelError(
                f"{p} is an official YOLOv7 checkpoint with layers edgeprune does not map: {extra[:6]} "
                f"(yolov7x/w6/e6/d6/e6e or a custom cfg); supported: cfg/training/yolov7.yaml and "
                f"yolov7-tiny.yaml training checkpoints")
        return "yolov7-official"
    if any(g.startswith("ultralytics.") for g in found):
        return "ultralytics"
    plain = ("torch._utils.", "torch.nn.parameter.", "torch.storage.", "collections.", "_codecs.",
             "builtins.",
             "__builtin__.")
    # top-level torch names are storages, dtypes, torch.device / torch.Size: tensor data, not classes
    classes = sorted(g for g in found if not g.startswith(plain) and not (g.startswith("torch.")
                                                                       and g.count(".") == 1))
    what = (f"objects of {classes[:6]}" if classes
            else "plain tensors (a state dict without the model's structure)")
    raise InvalidModelError(f"{p} holds {what}; edgeprune loads {SUPPORTED}")


def load(path: str | os.PathLike, *, num_classes: int | None = None) -> nn.Module:
    """Load a user's detector: official YOLOv7 checkpoint, Ultralytics checkpoint or Ultralytics YAML.

    ``num_classes`` only applies to an Ultralytics model YAML (an untrained model with that many classes).
    The result follows edgeprune's model contract; ``model.io`` describes its input and output.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidModelError(f"path must be a file path, got {type(path).__name__}")
    kind = checkpoint_kind(path)
    if kind == "yolov7-official":
        from edgeprune.models.yolov7_checkpoint import load_official_yolov7

        return load_official_yolov7(path)
    from edgeprune.models.ultralytics import load_ultralytics

    return load_ultralytics(path, num_classes=num_classes)
