"""Label-free fidelity: how well a (pruned) student reproduces its teacher's detections.

The teacher's own confident detections (``conf_thres``, default 0.25) on unlabeled images are the
pseudo ground truth, computed once and cached; the student's mAP against them is the score. The
teacher scored against itself gives exactly 1.0.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

import torch

from edgeprune.data.base import DetectionDataset
from edgeprune.data.folder import as_dataset
from edgeprune.errors import InvalidDataError
from edgeprune.evaluation.coco import GroundTruth, coco_map
from edgeprune.evaluation.detection import PredictFn, collect, model_layout, torch_predictor
from edgeprune.runtimes.preprocess import _as_hw


def model_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over a model's state dict (names, shapes, values): identifies the teacher in cache keys."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class FidelityEvaluator:
    """``fidelity_mAP50-95`` / ``fidelity_mAP50`` of a model against ``teacher``'s detections."""

    primary = "fidelity_mAP50-95"

    def __init__(
        self,
        teacher: torch.nn.Module,
        images: str | os.PathLike | Sequence[str | os.PathLike] | DetectionDataset,
        img_size: int | tuple[int, int],
        conf_thres: float = 0.25,
        iou_thres: float = 0.65,
        student_conf_thres: float = 0.001,
        batch_size: int = 8,
        max_images: int | None = None,
        max_det: int = 300,
    ) -> None:
        self.teacher = teacher
        self.img_size = _as_hw(img_size)
        self.dataset = as_dataset(images, self.img_size, labeled=False, max_images=max_images)
        self.source = str(images) if isinstance(images, (str, os.PathLike)) else type(images).__name__
        self.conf_thres, self.iou_thres = float(conf_thres), float(iou_thres)
        # the student must be allowed to output everything the teacher's pseudo-GT holds
        self.student_conf_thres = min(float(student_conf_thres), self.conf_thres)
        self.batch_size = int(batch_size)
        self.max_images, self.max_det = max_images, int(max_det)
        self._pseudo_gt: list[GroundTruth] | None = None
        self._num_classes: int | None = None
        self._teacher_sha: str | None = None

    @property
    def names(self) -> list[str]:
        names = getattr(self.teacher, "names", None)
        n = self.num_classes
        return [str(x) for x in names][:n] if names and len(names) >= n else [str(c) for c in range(n)]

    @property
    def num_classes(self) -> int:
        self.pseudo_ground_truth()
        return int(self._num_classes or 0)

    def pseudo_ground_truth(self) -> list[GroundTruth]:
        """The teacher's detections per image (computed on first use, then cached)."""
        if self._pseudo_gt is None:
            widths: list[int] = []

            def record(fn: PredictFn) -> PredictFn:
                def wrapped(batch):
                    out = fn(batch)
                    widths.append(int(out.shape[-1]))
                    return out
                return wrapped

            with torch_predictor(self.teacher) as predict:
                images, dets = collect(self.dataset, record(predict), self.batch_size, self.conf_thres,
                                       self.iou_thres, self.max_det, self.max_images,
                                       layout=model_layout(self.teacher))
            gts = [GroundTruth(d.class_ids.copy(), d.boxes.astype("float64"), im.shape)
                   for d, im in zip(dets, images)]
            if not any(len(g.classes) for g in gts):
                raise InvalidDataError(
                    f"the teacher detects nothing above conf {self.conf_thres} on {len(gts)} images: "
                    "no pseudo ground truth to compare against (lower conf_thres or use other images)"
                )
            nc = getattr(self.teacher, "num_classes", None)
            self._num_classes = int(nc) if nc else max(widths) - 5  # cxcywh_obj_cls rows
            self._pseudo_gt = gts
        return self._pseudo_gt

    def evaluate_fn(self, predict_fn: PredictFn) -> dict[str, float]:
        """Fidelity of a numpy predictor (an exported or compiled candidate) to the teacher."""
        gts = self.pseudo_ground_truth()
        # a student is pruned from the teacher: same output layout
        _, preds = collect(self.dataset, predict_fn, self.batch_size, self.student_conf_thres,
                           self.iou_thres, self.max_det, self.max_images, layout=model_layout(self.teacher))
        m = coco_map(gts, preds, self.num_classes, self.names, self.max_det)
        return {"fidelity_mAP50-95": m["mAP50-95"], "fidelity_mAP50": m["mAP50"]}

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        self.pseudo_ground_truth()  # the teacher first, so it is never the module being scored
        with torch_predictor(model) as predict:
            return self.evaluate_fn(predict)

    def settings(self) -> dict:
        if self._teacher_sha is None:
            self._teacher_sha = model_fingerprint(self.teacher)
        n = len(self.dataset) if not self.max_images else min(len(self.dataset), int(self.max_images))
        return {"kind": "fidelity", "images": self.source, "n_images": n, "img_size": list(self.img_size),
                "teacher_sha256": self._teacher_sha, "conf_thres": self.conf_thres,
                "iou_thres": self.iou_thres, "student_conf_thres": self.student_conf_thres,
                "max_det": self.max_det}
