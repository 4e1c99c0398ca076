"""Distillation from the unpruned teacher on unlabeled images.

The student matches the teacher's raw head outputs, cell by cell (pruning never changes the output
convs, so a pruned student's outputs line up with its teacher's exactly). Both are the train-mode
head outputs ``[B, na, H, W, 5 + nc]``; the teacher runs with its BatchNorm in eval mode (running
statistics, unchanged by distillation) and only its head in train mode, so it returns raw logits.

Per level, with ``p_t = sigmoid(teacher)`` and ``w = p_t[..., 4]`` the teacher's objectness:

* objectness: ``KL(p_t_obj || sigmoid(s_obj))`` (binary), averaged over every cell and anchor, so
  the student also learns where there is nothing;
* box: squared error between ``sigmoid(s_xywh)`` and ``p_t_xywh`` (the decoded box is a fixed function
  of these sigmoids, and they are bounded, unlike raw logits), averaged with weights ``w``;
* class: binary KL of the class probabilities, averaged with weights ``w``.

Weighting by the teacher's objectness focuses box and class terms on the cells that produce
detections; background cells' boxes and classes never reach the output after thresholding.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from edgeprune.errors import InvalidModelError


@torch.no_grad()
def raw_head_outputs(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Train-mode head outputs of ``model`` computed with BatchNorm in eval mode (no state change)."""
    detect = getattr(model, "detect", None)
    if detect is None:
        raise InvalidModelError("distillation needs model.detect (see the model contract)")
    was_training = model.training
    model.eval()
    detect.train()  # the head returns raw logits when its own training flag is set
    try:
        out = model(images)
    finally:
        model.train(was_training)
    if isinstance(out, dict):  # anchor-free Ultralytics head: {"boxes", "scores", "feats"}
        return out
    if not isinstance(out, (list, tuple)):
        raise InvalidModelError("the teacher's head did not return raw per-level outputs in train mode")
    return list(out)


def _binary_kl(student_logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(target || sigmoid(student)) for Bernoulli variables: BCE minus target entropy."""
    p = target_probs.clamp(1e-6, 1 - 1e-6)
    bce = F.binary_cross_entropy_with_logits(student_logits, target_probs, reduction="none")
    entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    return bce - entropy


class DistillObjective:
    """``objective(student, images) -> (loss, parts)`` matching the teacher's raw head outputs."""

    def __init__(
        self, teacher: nn.Module, box: float = 1.0, obj: float = 1.0, cls: float = 1.0, eps: float = 1e-6
    ) -> None:
        # the teacher runs under no_grad; its parameters' requires_grad flags are left alone because
        # users often deep-copy the teacher to make the student
        self.teacher = teacher
        self.w_box, self.w_obj, self.w_cls, self.eps = box, obj, cls, eps

    def __call__(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Distillation loss of the student ``model`` on a batch of images."""
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        t_out = raw_head_outputs(self.teacher, images)
        s_out = model(images)
        if isinstance(t_out, dict):  # layout cxcywh_cls: no objectness term
            from edgeprune.training.ultralytics_objectives import anchor_free_distill

            lbox, lcls = anchor_free_distill(s_out, t_out, int(self.teacher.detect.reg_max), self.eps)
            loss = self.w_box * lbox + self.w_cls * lcls
            return loss, {"box": float(lbox.detach()), "obj": 0.0, "cls": float(lcls.detach())}
        return self.loss(s_out, t_out)

    def loss(self, s_out, t_out: list[torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss between the student's raw outputs ``s_out`` and the teacher's ``t_out``."""
        if not isinstance(s_out, (list, tuple)) or len(s_out) != len(t_out):
            raise InvalidModelError("the student must return one raw output per level in train mode")
        lbox = lobj = lcls = t_out[0].new_zeros(())
        for s, t in zip(s_out, t_out):
            if s.shape != t.shape:
                raise InvalidModelError(f"student output {tuple(s.shape)} != teacher output {tuple(t.shape)}")
            s, pt = s.float(), t.float().sigmoid()
            w = pt[..., 4]
            wsum = w.sum().clamp(min=self.eps)
            lobj = lobj + _binary_kl(s[..., 4], pt[..., 4]).mean()
            lbox = lbox + (((s[..., :4].sigmoid() - pt[..., :4]) ** 2).sum(-1) * w).sum() / wsum
            if s.shape[-1] > 5:
                lcls = lcls + (_binary_kl(s[..., 5:], pt[..., 5:]).mean(-1) * w).sum() / wsum
        loss = self.w_box * lbox + self.w_obj * lobj + self.w_cls * lcls
        parts = {"box": float(lbox.detach()), "obj": float(lobj.detach()), "cls": float(lcls.detach())}
        return loss, parts
