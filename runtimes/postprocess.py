"""Decode a detector's output and run class-aware NMS (OpenCV's batched NMS). No torch.

The detector output: ``[batch, N, K]`` rows in network-input pixels, already sigmoid-ed, in one of the
layouts of ``edgeprune.runtimes.model_io``: ``cxcywh_obj_cls`` (``cx, cy, w, h, objectness, class
probabilities``; YOLOv7) or ``cxcywh_cls`` (no objectness; anchor-free Ultralytics heads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeprune.errors import InvalidDataError
from edgeprune.runtimes.model_io import LAYOUTS


@dataclass
class Detections:
    """Boxes (xyxy, float32), scores (float32) and class ids (int64) of one image."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def empty_detections() -> Detections:
    return Detections(
        np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    )


def xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    out = np.empty_like(b)
    out[:, 0] = b[:, 0] - b[:, 2] / 2
    out[:, 1] = b[:, 1] - b[:, 3] / 2
    out[:, 2] = b[:, 0] + b[:, 2] / 2
    out[:, 3] = b[:, 1] + b[:, 3] / 2
    return out


def postprocess(
    pred: np.ndarray,
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    max_det: int = 300,
    class_agnostic: bool = False,
    layout: str = "cxcywh_obj_cls",
) -> Detections:
    """Decoded predictions of ONE image (``[N, K]`` or ``[1, N, K]``) -> NMS-ed detections.

    Score = objectness x best class probability (``cxcywh_obj_cls``) or the best class probability
    (``cxcywh_cls``); boxes below ``conf_thres`` are dropped, then class-aware NMS
    (``cv2.dnn.NMSBoxesBatched``) keeps at most ``max_det`` boxes.
    """
    import cv2

    p = np.asarray(pred)
    if p.ndim == 3:
        if p.shape[0] != 1:
            raise InvalidDataError(f"postprocess takes one image, got a batch of {p.shape[0]}")
        p = p[0]
    if layout not in LAYOUTS:
        raise InvalidDataError(f"unknown output layout {layout!r}; expected one of {list(LAYOUTS)}")
    first_cls = 5 if layout == "cxcywh_obj_cls" else 4
    if p.ndim != 2 or p.shape[1] < first_cls + 1:
        raise InvalidDataError(
            f"expected predictions [N, {first_cls}+C] with C >= 1 (layout {layout}), got shape {p.shape}")
    p = p.astype(np.float32, copy=False)
    cls_scores = p[:, 5:] * p[:, 4:5] if first_cls == 5 else p[:, 4:]
    class_ids = cls_scores.argmax(1)
    scores = cls_scores[np.arange(p.shape[0]), class_ids]
    keep = scores > conf_thres
    if not keep.any():
        return empty_detections()
    boxes = xywh_to_xyxy(p[keep, :4])
    scores, class_ids = scores[keep], class_ids[keep]
    # OpenCV's NMS takes (x, y, w, h) boxes
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    if class_agnostic:
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), conf_thres, iou_thres)
    else:
        idx = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), class_ids.tolist(), conf_thres, iou_thres
        )
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:max_det]
    return Detections(
        boxes[idx].astype(np.float32), scores[idx].astype(np.float32), class_ids[idx].astype(np.int64)
    )
