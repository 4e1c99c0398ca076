"""Training objectives for Ultralytics' anchor-free detectors (layout ``cxcywh_cls``).

* ``UltralyticsObjective``: Ultralytics' own ``v8DetectionLoss`` (task-aligned assignment, box IoU,
  DFL and class BCE, Ultralytics' default gains) on edgeprune's labeled batches.
* ``anchor_free_distill``: the distillation terms for heads without objectness: class scores by binary
  KL, and each box side's distribution over DFL bins by KL, both weighted by the teacher's best class
  probability so that cells with objects count most.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.errors import InvalidModelError


class UltralyticsObjective:
    """``objective(model, (images, targets, ...)) -> (loss, parts)`` with Ultralytics' detection loss."""

    def __init__(self, model: nn.Module) -> None:
        from edgeprune.models.ultralytics import _require_ultralytics

        _require_ultralytics()
        from ultralytics.cfg import get_cfg
        from ultralytics.utils.loss import v8DetectionLoss

        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "model"):
            raise InvalidModelError("the Ultralytics loss needs an UltralyticsDetector (ep.models.load)")
        args = getattr(inner, "args", None)
        # checkpoints store the training args as a dict; the loss reads gains as attributes
        inner.args = get_cfg(overrides={k: v for k, v in (args or {}).items() if k in ("box", "cls", "dfl")}
                             if isinstance(args, dict) else None) if not hasattr(args, "box") else args
        self.loss = v8DetectionLoss(inner)

    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        """Train-mode forward of the images, scored against edgeprune targets ``[n, 6]``."""
        images, targets = batch[0], batch[1]
        targets = targets.to(images.device)
        ul_batch = {"batch_idx": targets[:, 0], "cls": targets[:, 1], "bboxes": targets[:, 2:6]}
        loss, items = self.loss(model(images), ul_batch)
        if isinstance(items, dict):  # newer Ultralytics: {"box_loss": ..., "cls_loss": ..., "dfl_loss": ...}
            parts = {k.replace("_loss", ""): float(v) for k, v in items.items()}
        else:
            parts = dict(zip(("box", "cls", "dfl"), map(float, items.detach().flatten().tolist())))
        return loss.sum(), parts


def _binary_kl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = target.clamp(1e-6, 1 - 1e-6)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return bce + p * p.log() + (1 - p) * (1 - p).log()


def anchor_free_distill(student: dict, teacher: dict, reg_max: int,
                        eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """(box, cls) distillation terms from Ultralytics train-mode outputs ``{"boxes", "scores", ...}``."""
    sb, ss = student["boxes"].float(), student["scores"].float()  # [B, 4*reg_max, N], [B, nc, N]
    tb, ts = teacher["boxes"].float(), teacher["scores"].float()
    if sb.shape != tb.shape or ss.shape != ts.shape:
        raise InvalidModelError(f"student outputs {tuple(sb.shape)}/{tuple(ss.shape)} differ from the "
                                f"teacher's {tuple(tb.shape)}/{tuple(ts.shape)}")
    pt = ts.sigmoid()
    w = pt.max(1).values  # [B, N]: how much the teacher sees an object at each anchor
    wsum = w.sum().clamp(min=eps)
    lcls = (_binary_kl(ss, pt).mean(1) * w).sum() / wsum
    b, _, n = sb.shape
    s_log = sb.view(b, 4, reg_max, n).log_softmax(2)
    t_prob = tb.view(b, 4, reg_max, n).softmax(2)
    kl = (t_prob * (t_prob.clamp(min=eps).log() - s_log)).sum(2).mean(1)  # [B, N]
    lbox = (kl * w).sum() / wsum
    return lbox, lcls
