"""COCO-style mAP with pycocotools on in-memory ground truth and detections.

Ground truth and detections are given in ORIGINAL image pixels (xyxy); they are converted to COCO
dicts in memory (ids start at 1: pycocotools treats id 0 as "unmatched"). pycocotools' printing is
swallowed; the numbers are its accumulated precision averaged as its ``summarize()`` does.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeprune.runtimes.postprocess import Detections


@dataclass
class GroundTruth:
    """Objects of one image: class ids [n], xyxy boxes [n, 4] in pixels, and the image (h, w)."""

    classes: np.ndarray
    boxes: np.ndarray
    shape: tuple[int, int]


def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def to_coco_gt(gts: Sequence[GroundTruth], num_classes: int, names: Sequence[str] | None = None) -> dict:
    """Ground truth as a COCO dataset dict (image i -> id i+1, class c -> category c+1)."""
    names = list(names) if names else [str(c) for c in range(num_classes)]
    images, anns = [], []
    for i, gt in enumerate(gts):
        images.append({"id": i + 1, "height": int(gt.shape[0]), "width": int(gt.shape[1])})
        for c, (x, y, w, h) in zip(np.asarray(gt.classes).reshape(-1), _xywh(gt.boxes)):
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "iscrowd": 0,
                         "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h)})
    cats = [{"id": c + 1, "name": names[c] if c < len(names) else str(c)} for c in range(num_classes)]
    return {"images": images, "annotations": anns, "categories": cats}


def to_coco_detections(preds: Sequence[Detections]) -> list[dict]:
    """Detections (one per image, in image order) as COCO result dicts."""
    out = []
    for i, det in enumerate(preds):
        for c, s, (x, y, w, h) in zip(det.class_ids, det.scores, _xywh(det.boxes)):
            out.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                        "bbox": [float(x), float(y), float(w), float(h)]})
    return out


def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else 0.0


def coco_map(
    gts: Sequence[GroundTruth],
    preds: Sequence[Detections],
    num_classes: int,
    names: Sequence[str] | None = None,
    max_det: int = 300,
    per_class: bool = False,
) -> dict[str, float]:
    """``{"mAP50-95", "mAP50"}`` (plus ``AP50-95/<name>`` if ``per_class``) computed by pycocotools.

    No detections -> 0.0. Classes without ground truth are left out of the mean (COCO convention);
    detections of classes the ground truth does not know are ignored.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(gts) != len(preds):
        raise ValueError(f"{len(gts)} ground-truth images but {len(preds)} prediction lists")
    names = list(names) if names else [str(c) for c in range(num_classes)]
    zero = {"mAP50-95": 0.0, "mAP50": 0.0}
    if per_class:
        zero.update({f"AP50-95/{n}": 0.0 for n in names[:num_classes]})
    gt_dict = to_coco_gt(gts, num_classes, names)
    dets = to_coco_detections(preds)
    if not gt_dict["annotations"]:
        warnings.warn("no ground-truth objects: mAP is undefined, reporting 0.0", stacklevel=2)
        return zero
    if not dets:
        return zero
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [1, 10, int(max_det)]
        ev.evaluate()
        ev.accumulate()
    # precision: [iou thresholds, recall points, classes, area ranges, max dets]; -1 = no GT.
    # Averaged exactly as COCOeval.summarize() does, but at maxDets=max_det (summarize() hard-codes
    # 100 for its first stat, so it reports -1 for any other limit).
    prec = ev.eval["precision"][:, :, :, 0, -1]
    at50 = prec[np.isclose(ev.params.iouThrs, 0.5)]
    result = {"mAP50-95": _mean_valid(prec), "mAP50": _mean_valid(at50)}
    if per_class:
        for k, cat in enumerate(ev.params.catIds):
            result[f"AP50-95/{names[cat - 1]}"] = _mean_valid(prec[:, :, k])
    return result
