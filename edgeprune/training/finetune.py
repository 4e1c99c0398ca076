"""Fine-tuning callables: ``finetune(model, steps) -> model``, used after pruning.

Any callable with that signature works. Built-ins:

* ``LabeledFinetune(data_dir, img_size, ...)``: the family's own loss on a labeled YOLO dataset
  (YOLOv7's; Ultralytics' ``v8DetectionLoss`` for Ultralytics models); with ``teacher=`` (the
  unpruned model) the distillation loss is added with weight ``distill`` (YOLOv7-layout heads;
  ``benchmarks/bench_recovery.py`` compares labels, distillation and both on the demo).
* ``DistillFinetune(teacher, images_dir, img_size, ...)``: match the unpruned teacher on unlabeled
  images (see ``edgeprune.training.distill``).

Extra keyword arguments are ``TrainConfig`` fields (``optimizer``, ``weight_decay``, ``ema``,
``device``, ``ckpt_dir``, ...). Defaults differ from ``TrainConfig`` where short fine-tunes need it:
no EMA, 10 % warm-up, and BatchNorm statistics re-estimated on 16 batches at the end (the running
statistics otherwise lag behind the weights). The returned model is in eval mode.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edgeprune.errors import InvalidConfigError
from edgeprune.training.distill import DistillObjective
from edgeprune.training.loss import LossHyp, YoloLoss
from edgeprune.training.trainer import TrainConfig, Trainer

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def make_config(steps: int | None = None, **kwargs: Any) -> TrainConfig:
    """A ``TrainConfig`` from keyword arguments; unknown names raise ``InvalidConfigError``."""
    unknown = sorted(set(kwargs) - _CONFIG_FIELDS)
    if unknown:
        raise InvalidConfigError(f"unknown training setting(s) {unknown}; valid: {sorted(_CONFIG_FIELDS)}")
    if "warmup_steps" not in kwargs and steps is not None:
        kwargs["warmup_steps"] = max(1, steps // 10)  # short fine-tunes: 10 % warm-up
    return TrainConfig(**kwargs)


class LabeledObjective:
    """``objective(model, (images, targets, ...)) -> (loss, parts)`` with the YOLOv7 loss.

    With a ``teacher``, ``distill`` x the distillation loss (``DistillObjective``) is added; the
    student's forward pass is shared by both terms.
    """

    def __init__(self, model: nn.Module, img_size: int, hyp: LossHyp | None = None,
                 teacher: nn.Module | None = None, distill: float = 1.0) -> None:
        self.loss = YoloLoss(model, img_size=img_size, hyp=hyp)
        self.distill = DistillObjective(teacher) if teacher is not None and distill > 0 else None
        self.w_distill = float(distill)

    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Forward the images in train mode and score them against the targets (and the teacher)."""
        images, targets = batch[0], batch[1]
        out = model(images)
        loss, parts = self.loss(out, targets)
        if self.distill is None:
            return loss, parts
        from edgeprune.training.distill import raw_head_outputs

        kd, kd_parts = self.distill.loss(out, raw_head_outputs(self.distill.teacher, images))
        # YoloLoss scales its sum by the batch size; match that so `distill` is a plain ratio
        kd = kd * images.shape[0]
        parts = {**parts, **{f"kd_{k}": v for k, v in kd_parts.items()}}
        return loss + self.w_distill * kd, parts


def labeled_objective(model: nn.Module, img_size: int, hyp: LossHyp | None = None,
                      teacher: nn.Module | None = None, distill: float = 0.0) -> Any:
    """The family's own loss: YOLOv7's for anchor-based heads, Ultralytics' for ``cxcywh_cls`` models."""
    if getattr(model, "output_layout", None) == "cxcywh_cls":
        if teacher is not None and distill > 0:
            raise InvalidConfigError("labels + distillation (distill > 0) is available for YOLOv7-layout "
                                     "heads; use DistillFinetune or distill=0 for Ultralytics models")
        from edgeprune.training.ultralytics_objectives import UltralyticsObjective

        return UltralyticsObjective(model)
    return LabeledObjective(model, img_size, hyp, teacher, distill)


class _Finetune:
    """What the built-in fine-tunes share: settings checked when built, one ``Trainer`` per call."""

    cfg: dict[str, Any]

    def _configure(self, batch_size: int, lr: float, cfg: dict[str, Any]) -> None:
        self.cfg = {"batch_size": batch_size, "lr": lr, "ema": False, "bn_recalibrate": 16, **cfg}
        make_config(**self.cfg).validate()  # fail early on bad settings
        self.last_trainer: Trainer | None = None

    def __call__(self, model: nn.Module, steps: int) -> nn.Module:
        """Train ``model`` for ``steps`` optimizer steps; returns it in eval mode."""
        trainer = self.make_trainer(model, steps)
        self.last_trainer = trainer
        return trainer.train(steps).eval()

    def make_trainer(self, model: nn.Module, steps: int, **overrides: Any) -> Trainer:
        """The ``Trainer`` a call would use (``overrides``: TrainConfig fields, e.g. ckpt_dir, resume)."""
        raise NotImplementedError


class LabeledFinetune(_Finetune):
    """Fine-tune on labeled data: a YOLO folder (images/ + labels/), a data.yaml, or a dataset instance
    (e.g. ``CocoDataset``; it is copied and augmented with this fine-tune's seed)."""

    def __init__(
        self,
        data_dir: str | Path | Any,
        img_size: int,
        batch_size: int = 16,
        lr: float = 5e-4,
        augment: bool = True,
        hyp: LossHyp | None = None,
        teacher: nn.Module | None = None,
        distill: float = 1.0,
        cache_images: bool = True,
        **cfg: Any,
    ) -> None:
        self.data_dir = data_dir if hasattr(data_dir, "samples") else Path(data_dir)  # dataset or path
        self.img_size, self.augment, self.hyp = int(img_size), augment, hyp
        if hasattr(data_dir, "samples") and tuple(data_dir.img_size) != (self.img_size, self.img_size):
            raise InvalidConfigError(f"the dataset letterboxes to {tuple(data_dir.img_size)} but img_size is "
                                     f"{self.img_size}; build it with the same img_size")
        if distill < 0:
            raise InvalidConfigError(f"distill (the distillation loss weight) must be >= 0, got {distill}")
        self.teacher, self.distill, self.cache_images = teacher, float(distill), bool(cache_images)
        self._dataset = None
        self._configure(batch_size, lr, cfg)

    def make_trainer(self, model: nn.Module, steps: int, **overrides: Any) -> Trainer:
        """The ``Trainer`` a call would use (``overrides``: TrainConfig fields, e.g. ckpt_dir, resume)."""
        from edgeprune.data import YoloDataset, collate

        config = make_config(steps, **{**self.cfg, **overrides})
        if not isinstance(self.data_dir, Path):  # a copy: the caller's dataset keeps its augment and RNG
            dataset = copy.copy(self.data_dir)
            dataset.augment, dataset._rng = self.augment, np.random.default_rng(config.seed)
        else:
            if self._dataset is None or not self.cache_images:
                # one dataset across calls: its decoded, letterboxed images are cached (augmentation
                # is applied after the cache, so every epoch still sees fresh flips and colour jitter)
                split = "train" if self.data_dir.suffix.lower() in (".yaml", ".yml") else None  # a data YAML
                self._dataset = YoloDataset(self.data_dir, self.img_size, augment=self.augment,
                                            seed=config.seed, split=split, cache=self.cache_images)
            dataset = self._dataset
        teacher = self.teacher.to(config.device).eval() if self.teacher is not None else None
        objective = labeled_objective(model, self.img_size, self.hyp, teacher, self.distill)
        return Trainer(model, objective, dataset, config, collate_fn=collate)

    def settings(self) -> dict:
        """JSON-able description (for cache keys and reports)."""
        if isinstance(self.data_dir, Path):
            data = str(self.data_dir)
        else:  # a stable identity for the run fingerprint (the object's repr would change every run)
            from edgeprune.evaluation.detection import labels_fingerprint

            data = f"{type(self.data_dir).__name__}:{labels_fingerprint(self.data_dir)}"
        out = {"kind": "labeled", "data_dir": data, "img_size": self.img_size,
               "augment": self.augment, **{k: v for k, v in self.cfg.items() if k != "device"}}
        if self.teacher is not None and self.distill > 0:
            from edgeprune.evaluation.fidelity import model_fingerprint

            out.update(kind="labeled+distill", distill=self.distill,
                       teacher_sha256=model_fingerprint(self.teacher))
        return out


class DistillFinetune(_Finetune):
    """Fine-tune a (pruned) student to match ``teacher`` on unlabeled images in ``images_dir``."""

    def __init__(
        self,
        teacher: nn.Module,
        images_dir: str | Path,
        img_size: int,
        batch_size: int = 16,
        lr: float = 5e-4,
        box: float = 1.0,
        obj: float = 1.0,
        cls: float = 1.0,
        augment: bool = True,
        **cfg: Any,
    ) -> None:
        self.teacher = teacher
        self.images_dir, self.img_size, self.augment = Path(images_dir), int(img_size), augment
        self.weights = {"box": box, "obj": obj, "cls": cls}
        self._configure(batch_size, lr, cfg)

    def make_trainer(self, model: nn.Module, steps: int, **overrides: Any) -> Trainer:
        """The ``Trainer`` a call would use (``overrides``: TrainConfig fields, e.g. ckpt_dir, resume)."""
        config = make_config(steps, **{**self.cfg, **overrides})
        teacher = self.teacher.to(config.device)
        from edgeprune.data import ImageFolder, collate

        # teacher and student see the same augmented image, so flips and colour jitter are free extra data
        dataset = ImageFolder(self.images_dir, self.img_size, augment=self.augment, seed=config.seed)
        objective = DistillObjective(teacher, **self.weights)
        return Trainer(model, objective, dataset, config, collate_fn=collate)

    def settings(self) -> dict:
        """JSON-able description (for cache keys and reports)."""
        return {"kind": "distill", "images_dir": str(self.images_dir), "img_size": self.img_size,
                "augment": self.augment, **self.weights,
                **{k: v for k, v in self.cfg.items() if k != "device"}}
