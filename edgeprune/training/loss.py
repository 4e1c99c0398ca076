"""The YOLOv7 training loss: objectness BCE, class BCE and CIoU box regression.

This is the plain ``ComputeLoss`` of YOLOv5/YOLOv7 (not the SimOTA ``ComputeLossOTA``), written
from the published algorithm:

* Assignment (``build_targets``): every ground-truth box is matched, on every output level, to each
  anchor whose width and height ratios to the box are all below ``anchor_t`` (4.0). A matched box
  is a positive in the grid cell holding its centre and also in the (up to) two neighbouring cells
  whose borders the centre is closest to (offset ``g`` = 0.5), so each box gets up to 3 positive
  cells per matched anchor. This triples the positives, which speeds up training a lot.
* Box: the head decodes ``xy = 2 * sigmoid(t_xy) - 0.5`` (relative to the cell, range -0.5..1.5,
  which is why neighbouring cells can predict the box) and ``wh = (2 * sigmoid(t_wh))^2 * anchor``
  (0..4 anchors, hence ``anchor_t`` = 4). The box loss is ``1 - CIoU`` averaged over positives.
* Objectness: BCE over every cell and anchor; positives target their (detached, clamped) IoU,
  others 0. Levels are weighted by ``balance`` [4.0, 1.0, 0.4] (small-object level counts most).
* Class: BCE over the positives, one-hot targets (only when there is more than one class).

Gains follow YOLOv7's ``hyp.scratch.p5``: box 0.05, obj 1.0 x (img_size / 640)^2, cls 0.3 x nc / 80
(each x 3 / nl). The total is multiplied by the batch size as in the reference implementation, so
learning rates tuned for YOLOv7 carry over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from edgeprune.errors import InvalidModelError


@dataclass
class LossHyp:
    """Loss gains and assignment settings (YOLOv7 ``hyp.scratch.p5`` defaults, before scaling)."""

    box: float = 0.05
    obj: float = 1.0
    cls: float = 0.3
    anchor_t: float = 4.0
    balance: tuple[float, ...] = (4.0, 1.0, 0.4)
    label_smoothing: float = 0.0


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching rows of two ``[n, 4]`` (cx, cy, w, h) box tensors -> ``[n]``."""
    b1x1, b1x2 = box1[:, 0] - box1[:, 2] / 2, box1[:, 0] + box1[:, 2] / 2
    b1y1, b1y2 = box1[:, 1] - box1[:, 3] / 2, box1[:, 1] + box1[:, 3] / 2
    b2x1, b2x2 = box2[:, 0] - box2[:, 2] / 2, box2[:, 0] + box2[:, 2] / 2
    b2y1, b2y2 = box2[:, 1] - box2[:, 3] / 2, box2[:, 1] + box2[:, 3] / 2
    inter = (torch.min(b1x2, b2x2) - torch.max(b1x1, b2x1)).clamp(0) * (
        torch.min(b1y2, b2y2) - torch.max(b1y1, b2y1)
    ).clamp(0)
    w1, h1 = b1x2 - b1x1, b1y2 - b1y1 + eps
    w2, h2 = b2x2 - b2x1, b2y2 - b2y1 + eps
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    # smallest enclosing box: its squared diagonal normalises the centre distance (DIoU term)
    cw = torch.max(b1x2, b2x2) - torch.min(b1x1, b2x1)
    ch = torch.max(b1y2, b2y2) - torch.min(b1y1, b2y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = (box2[:, 0] - box1[:, 0]) ** 2 + (box2[:, 1] - box1[:, 1]) ** 2
    # aspect-ratio consistency term; alpha is treated as a constant (no gradient), as published
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


def _head_geometry(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor, int, int, int]:
    """Anchors in grid units ``[nl, na, 2]``, strides ``[nl]``, nl, na, nc read from ``model.detect``."""
    detect = getattr(model, "detect", None)
    if detect is None or not hasattr(detect, "anchors") or not hasattr(detect, "stride"):
        raise InvalidModelError(
            "the YOLO loss needs model.detect with 'anchors' (pixels) and 'stride' (see the model contract)"
        )
    anchors = torch.as_tensor(detect.anchors).detach().float()
    stride = torch.as_tensor(detect.stride).detach().float()
    nl, na = int(anchors.shape[0]), int(anchors.shape[1])
    if stride.numel() != nl:
        raise InvalidModelError(f"model.detect.stride has {stride.numel()} levels, anchors have {nl}")
    nc = int(getattr(model, "num_classes", 0) or getattr(detect, "nc", 0))
    if nc <= 0:
        raise InvalidModelError("model.num_classes is missing or not positive")
    return anchors / stride.view(-1, 1, 1), stride, nl, na, nc


class YoloLoss:
    """YOLOv7 loss for a model following the edgeprune model contract.

    ``loss(preds, targets) -> (total, parts)``: ``preds`` are the train-mode outputs (``nl`` tensors
    ``[B, na, H, W, 5 + nc]``), ``targets`` a ``[n, 6]`` tensor ``(image_index, cls, cx, cy, w, h)``
    normalised to the input. ``parts`` holds detached floats ``box``, ``obj``, ``cls``.
    """

    def __init__(self, model: nn.Module, img_size: int = 640, hyp: LossHyp | None = None) -> None:
        self.hyp = hyp or LossHyp()
        anchors, self.stride, self.nl, self.na, self.nc = _head_geometry(model)
        self.anchors = anchors  # grid units, moved to the prediction device on use
        if len(self.hyp.balance) < self.nl:
            raise InvalidModelError(f"loss balance has {len(self.hyp.balance)} weights for {self.nl} levels")
        scale = 3.0 / self.nl
        self.box_gain = self.hyp.box * scale
        self.cls_gain = self.hyp.cls * self.nc / 80.0 * scale
        self.obj_gain = self.hyp.obj * (img_size / 640.0) ** 2 * scale
        self.cp = 1.0 - 0.5 * self.hyp.label_smoothing
        self.cn = 0.5 * self.hyp.label_smoothing
        self.bce = nn.BCEWithLogitsLoss()

    def __call__(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss (scaled by batch size) and its detached parts."""
        if not isinstance(preds, (list, tuple)) or len(preds) != self.nl:
            raise InvalidModelError(
                f"expected {self.nl} train-mode head outputs, got {type(preds).__name__}; "
                "call the loss on model.train() outputs"
            )
        device = preds[0].device
        lbox = torch.zeros((), device=device)
        lobj = torch.zeros((), device=device)
        lcls = torch.zeros((), device=device)
        tcls, tbox, indices, anchors = self.build_targets(preds, targets.to(device))
        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros_like(pi[..., 0])
            n = b.shape[0]
            if n:
                ps = pi[b, a, gj, gi].float()
                pxy = ps[:, :2].sigmoid() * 2 - 0.5
                pwh = (ps[:, 2:4].sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox = lbox + (1.0 - iou).mean()
                # objectness target = IoU of the prediction (gr = 1 in the reference)
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    t = torch.full_like(ps[:, 5:], self.cn)
                    t[torch.arange(n, device=device), tcls[i]] = self.cp
                    lcls = lcls + self.bce(ps[:, 5:], t)
            lobj = lobj + self.bce(pi[..., 4].float(), tobj.float()) * self.hyp.balance[i]
        lbox = lbox * self.box_gain
        lobj = lobj * self.obj_gain
        lcls = lcls * self.cls_gain
        bs = preds[0].shape[0]
        total = (lbox + lobj + lcls) * bs
        parts = {"box": float(lbox.detach()), "obj": float(lobj.detach()), "cls": float(lcls.detach())}
        return total, parts

    def build_targets(
        self, preds: list[torch.Tensor], targets: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[torch.Tensor, ...]], list[torch.Tensor]]:
        """Assign targets to (image, anchor, cell) positives on every level.

        Returns per level: class ids, boxes ``(dx, dy, w, h)`` in grid units relative to the cell,
        indices ``(b, a, gj, gi)`` and the matched anchors (grid units).
        """
        device = targets.device
        na, nt = self.na, targets.shape[0]
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=device)
        # targets repeated per anchor, with the anchor index appended: [na, nt, 7]
        ai = torch.arange(na, device=device).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.float().repeat(na, 1, 1), ai[:, :, None]), 2)
        g = 0.5
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device).float() * g
        for i in range(self.nl):
            anchors = self.anchors[i].to(device)
            h, w = preds[i].shape[2], preds[i].shape[3]
            gain[2:6] = torch.tensor([w, h, w, h], device=device, dtype=torch.float32)
            t = targets * gain  # boxes in grid units of this level
            if nt:
                r = t[:, :, 4:6] / anchors[:, None]  # wh ratio to each anchor
                keep = torch.max(r, 1 / r).max(2)[0] < self.hyp.anchor_t
                t = t[keep]
                # neighbouring cells: left/up if the centre is in the cell's left/upper half, etc.
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                j, k = ((gxy % 1 < g) & (gxy > 1)).T
                lf, m = ((gxi % 1 < g) & (gxi > 1)).T
                sel = torch.stack((torch.ones_like(j), j, k, lf, m))
                t = t.repeat((5, 1, 1))[sel]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[sel]
            else:
                t = targets[0]
                offsets = torch.zeros_like(t[:, 2:4])
            b, c = t[:, :2].long().T
            gxy = t[:, 2:4]
            gwh = t[:, 4:6]
            gij = (gxy - offsets).long()
            gi = gij[:, 0].clamp(0, w - 1)
            gj = gij[:, 1].clamp(0, h - 1)
            a = t[:, 6].long()
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1).float(), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
