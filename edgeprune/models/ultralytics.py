"""Ultralytics detectors (YOLOv5u, YOLOv8, YOLO11 detect) behind edgeprune's model contract.

Needs the extra ``ultralytics``. Checkpoints are opened by Ultralytics' own loader in its restricted
mode (``torch_safe_load(..., safe_only=True)``: ``torch.load(weights_only=True)`` against its list of
known model classes), so no code in the file runs; a checkpoint naming anything else is refused.
``UltralyticsDetector`` wraps the ``DetectionModel``: eval forward ``[B, N, 4 + nc]`` rows
``(cx, cy, w, h, class probabilities)`` in input pixels (layout ``cxcywh_cls``: no objectness);
train forward is Ultralytics' raw prediction dict, which its ``v8DetectionLoss`` takes.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidModelError, MissingDependencyError

OUTPUT_LAYOUT = "cxcywh_cls"


def _require_ultralytics() -> Any:
    # Ultralytics checks the network and settings at import; keep it offline and quiet.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        import ultralytics
    except ImportError as e:
        raise MissingDependencyError("ultralytics", "ultralytics", f"for Ultralytics models: {e}") from e
    return ultralytics


class UltralyticsDetector(nn.Module):
    """A Ultralytics ``DetectionModel`` with ``num_classes``, ``names``, ``detect`` and a row output."""

    output_layout = OUTPUT_LAYOUT

    def __init__(self, model: nn.Module, names: list[str] | None = None) -> None:
        super().__init__()
        head = model.model[-1]
        if type(head).__name__ not in ("Detect", "v10Detect") or not hasattr(head, "nc"):
            raise InvalidModelError(
                f"only Ultralytics detection models are supported, this one ends in {type(head).__name__} "
                f"(segment/pose/obb/classify heads are not)")
        if getattr(head, "end2end", False):
            raise InvalidModelError("end-to-end (NMS-free) Ultralytics heads are not supported; "
                                    "use a YOLOv5u, YOLOv8 or YOLO11 detection model")
        head.dynamic = True  # recompute anchors every forward: no grid cached from a traced input
        head.export = False
        self.model = model
        self.num_classes = int(head.nc)
        raw = names if names is not None else getattr(model, "names", None)
        if isinstance(raw, dict):
            raw = [raw[k] for k in sorted(raw)]
        self.names = [str(n) for n in raw] if raw and len(raw) == self.num_classes else [
            f"class{i}" for i in range(self.num_classes)]
        model.names = dict(enumerate(self.names))

    @property
    def detect(self) -> nn.Module:
        """The Ultralytics ``Detect`` head (its ``stride``, ``nc``, ``reg_max``)."""
        return self.model.model[-1]

    @property
    def prune_exclude(self) -> tuple[str, ...]:
        """The box-regression output convs: their channels are DFL bins (split 4 x reg_max), never pruned.

        Pass as ``ep.prune(..., exclude=model.prune_exclude)``; the class-score output convs reach the
        model output directly and are left alone by the tracer without help.
        """
        idx = len(self.model.model) - 1
        return tuple(f"model.model.{idx}.cv2.{i}.2" for i in range(int(self.detect.nl)))

    def forward(self, x: torch.Tensor) -> Any:
        if self.training:
            return self.model(x)
        y = self.model(x)
        if isinstance(y, dict):  # the head alone in train mode (distillation's teacher): raw outputs
            return y
        if isinstance(y, (tuple, list)):
            y = y[0]
        return y.transpose(1, 2)  # [B, 4 + nc, N] -> rows [B, N, 4 + nc], as edgeprune's decoders take


def from_yaml(cfg: str | os.PathLike, num_classes: int | None = None) -> UltralyticsDetector:
    """An untrained Ultralytics detection model built from its YAML (e.g. ``yolov8n.yaml``); no download."""
    _require_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    try:
        model = DetectionModel(str(cfg), nc=num_classes, verbose=False)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise InvalidModelError(f"cannot build a Ultralytics model from {cfg}: {e}") from None
    return UltralyticsDetector(model.float()).eval()


def load_ultralytics(path: str | os.PathLike, num_classes: int | None = None) -> UltralyticsDetector:
    """A Ultralytics checkpoint (``best.pt`` of ``yolo train``) or model YAML as a wrapped detector."""
    p = Path(path)
    if p.suffix.lower() in (".yaml", ".yml"):
        return from_yaml(p, num_classes)
    _require_ultralytics()
    from ultralytics.nn.tasks import torch_safe_load

    if not p.is_file():  # Ultralytics would try to download a missing name; a local file is required
        raise InvalidModelError(f"model file not found: {p}")
    if "safe_only" not in inspect.signature(torch_safe_load).parameters:
        raise MissingDependencyError("ultralytics>=8.4.190", "ultralytics",
                                     "this Ultralytics has no restricted (weights-only) checkpoint loading")
    try:
        ckpt, _ = torch_safe_load(str(p), safe_only=True)
    except (TypeError, ModuleNotFoundError) as e:
        raise InvalidModelError(f"{p}: refused by Ultralytics' restricted loader: {e}") from None
    model = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"{p}: no model under 'ema' or 'model' in the Ultralytics checkpoint")
    model = model.float().eval()
    for m in model.modules():  # as Ultralytics' load_checkpoint does
        if hasattr(m, "inplace"):
            m.inplace = True
    det = UltralyticsDetector(model).eval()
    det.source = {"format": "ultralytics", "path": str(p), "version": ckpt.get("version"),
                  "imgsz": (ckpt.get("train_args") or {}).get("imgsz")}
    return det
