"""Detection mAP of a PyTorch model or of any batch predictor (ONNX / compiled candidates).

Both paths share one loop: letterboxed batches -> decoded ``[B, N, 5+nc]`` output -> the runtimes'
class-aware NMS (``edgeprune.runtimes.postprocess``) -> boxes mapped back to original pixels ->
pycocotools mAP against the dataset's labels.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from edgeprune.data.base import DetectionDataset, collate
from edgeprune.data.folder import as_dataset
from edgeprune.errors import InvalidConfigError, InvalidModelError
from edgeprune.evaluation.coco import GroundTruth, coco_map
from edgeprune.runtimes.model_io import LAYOUTS
from edgeprune.runtimes.postprocess import Detections, postprocess
from edgeprune.runtimes.preprocess import _as_hw, boxes_from_letterbox

DEFAULT_LAYOUT = "cxcywh_obj_cls"
MAX_DET = 300  # detections kept per image, as in the COCO protocol
PredictFn = Callable[[np.ndarray], Any]


@runtime_checkable
class Evaluator(Protocol):
    """Scores a model: ``evaluator(model)`` -> metrics containing ``evaluator.primary``."""

    primary: str

    def __call__(self, model: torch.nn.Module) -> dict[str, float]: ...

    def settings(self) -> dict: ...


def _loader(dataset: DetectionDataset, batch_size: int, max_images: int | None) -> DataLoader:
    if dataset.augment:  # evaluation must see the plain letterboxed images
        dataset = copy.copy(dataset)
        dataset.augment = False
    data = Subset(dataset, range(min(len(dataset), int(max_images)))) if max_images else dataset
    return DataLoader(data, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)


def collect(
    dataset: DetectionDataset,
    predict_fn: PredictFn,
    batch_size: int = 8,
    conf_thres: float = 0.001,
    iou_thres: float = 0.65,
    max_det: int = MAX_DET,
    max_images: int | None = None,
    progress: bool | None = None,
    layout: str = DEFAULT_LAYOUT,
) -> tuple[list[GroundTruth], list[Detections]]:
    """Run ``predict_fn`` over the dataset: its labels and the NMS-ed detections, in original pixels."""
    from tqdm import tqdm

    gts: list[GroundTruth] = []
    preds: list[Detections] = []
    loader = _loader(dataset, batch_size, max_images)
    disable = None if progress is None else not progress
    for images, _, infos in tqdm(loader, desc="evaluating", unit="batch", disable=disable, leave=False):
        out = predict_fn(images.numpy())
        out = np.asarray(out[0] if isinstance(out, (list, tuple)) else out, dtype=np.float32)
        if out.ndim != 3 or out.shape[0] != len(infos):
            raise InvalidModelError(
                f"predictions must be [batch={len(infos)}, N, K] rows, got shape {out.shape}"
            )
        for pred, info in zip(out, infos):
            lb = info.letterbox
            det = postprocess(pred, conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det,
                              layout=layout)
            det.boxes = boxes_from_letterbox(det.boxes, lb).astype(np.float32)
            preds.append(det)
            classes, boxes = dataset.labels(info.index, lb.orig_shape)
            gts.append(GroundTruth(classes, boxes, lb.orig_shape))
    return gts, preds


def evaluate_predictions(dataset: DetectionDataset, predict_fn: PredictFn, *, per_class: bool = False,
                         **options: Any) -> dict[str, float]:
    """mAP of any predictor: ``predict_fn`` maps a ``[B,3,S,S]`` float32 batch to ``[B,N,K]`` rows;
    ``options`` are ``collect``'s (batch_size, conf_thres, iou_thres, max_det, max_images, layout)."""
    gts, preds = collect(dataset, predict_fn, **options)
    max_det = options.get("max_det", MAX_DET)
    return coco_map(gts, preds, dataset.num_classes, dataset.names, max_det, per_class)


def model_layout(model: torch.nn.Module, default: str = DEFAULT_LAYOUT) -> str:
    """The output layout a model declares (``output_layout``), else ``default``."""
    layout = getattr(model, "output_layout", None) or default
    if layout not in LAYOUTS:
        raise InvalidModelError(f"model.output_layout {layout!r} is not one of {list(LAYOUTS)}")
    return layout


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.ndim == 4]


class torch_predictor:  # noqa: N801  (used like a function: ``with torch_predictor(model) as fn``)
    """Context manager turning a model into a numpy ``predict_fn``: eval mode, no grad, mode restored.

    On CPU the model runs in channels-last memory format inside the context (the demo YOLOv7-tiny:
    31 instead of 38 ms per image at batch 8 on one thread); the weights' format is restored on exit.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not isinstance(model, torch.nn.Module):
            raise InvalidModelError(f"expected a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        param = next(model.parameters(), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self._channels_last = False

    def __enter__(self) -> PredictFn:
        self._was_training = self.model.training
        self.model.eval()
        weights = _conv_weights(self.model)
        self._channels_last = (self.device.type == "cpu" and bool(weights) and not all(
            w.is_contiguous(memory_format=torch.channels_last) for w in weights))
        if self._channels_last:
            self.model.to(memory_format=torch.channels_last)
        return self.predict

    def __exit__(self, *exc: object) -> None:
        if self._channels_last:
            self.model.to(memory_format=torch.contiguous_format)
        self.model.train(self._was_training)

    @torch.no_grad()
    def predict(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(batch).to(self.device)
        if self._channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        out = self.model(x)
        if isinstance(out, (list, tuple)):  # e.g. original YOLOv7 eval returns (pred, raw)
            out = out[0]
        if not isinstance(out, torch.Tensor):
            raise InvalidModelError(f"model output must be a tensor [B, N, 5+nc], got {type(out).__name__}")
        return out.float().cpu().numpy()


def labels_fingerprint(dataset: DetectionDataset) -> str:
    """SHA-256 over the dataset's image paths and labels (part of cache keys)."""
    h = hashlib.sha256()
    for s in dataset.samples:
        h.update(os.fsencode(s.path))
        h.update(np.ascontiguousarray(s.classes, np.int64).tobytes())
        h.update(np.ascontiguousarray(s.boxes, np.float64).round(6).tobytes())
    return h.hexdigest()


class DetectionEvaluator:
    """mAP50-95 / mAP50 of a model on a labeled dataset (YOLO folder, data.yaml or dataset instance).

    With ``bootstrap=N`` (replicates over images, e.g. 1000) the metrics also hold the percentile
    interval of mAP50-95 as ``mAP50-95_low`` / ``mAP50-95_high`` (``confidence``, default 95 %), and
    ``last_matches`` keeps the per-image matching of the last call for paired comparisons
    (``edgeprune.evaluation.bootstrap.paired_difference``).
    """

    primary = "mAP50-95"

    def __init__(
        self,
        data: str | os.PathLike | DetectionDataset,
        img_size: int | tuple[int, int],
        batch_size: int = 8,
        conf_thres: float = 0.001,
        iou_thres: float = 0.65,
        max_images: int | None = None,
        max_det: int = MAX_DET,
        per_class: bool = False,
        output_layout: str = DEFAULT_LAYOUT,
        bootstrap: int = 0,
        confidence: float = 0.95,
        cache_images: bool = False,
    ) -> None:
        if bootstrap < 0 or not 0 < confidence < 1:
            raise InvalidConfigError(f"bootstrap must be >= 0 and confidence in (0, 1), got {bootstrap}, "
                                     f"{confidence}")
        # the layout of the predictions; a model with an ``output_layout`` attribute sets it when called
        self.output_layout = output_layout
        self.img_size = _as_hw(img_size)
        self.dataset = as_dataset(data, self.img_size, labeled=True)
        # evaluating many candidates on the same images: decode each image once (memory: S*S*3 bytes each)
        self.dataset.cache = bool(cache_images) or getattr(self.dataset, "cache", False)
        self.bootstrap, self.confidence = int(bootstrap), float(confidence)
        self.last_matches = None
        self.source = str(getattr(self.dataset, "source", data))
        self.batch_size = int(batch_size)
        self.conf_thres, self.iou_thres = float(conf_thres), float(iou_thres)
        self.max_images, self.max_det, self.per_class = max_images, int(max_det), per_class
        self._fingerprint: str | None = None

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        self.output_layout = model_layout(model, self.output_layout)
        with torch_predictor(model) as predict:
            return self.evaluate_fn(predict)

    def evaluate_fn(self, predict_fn: PredictFn) -> dict[str, float]:
        """The same metrics for a numpy predictor (an exported or compiled candidate)."""
        gts, preds = collect(self.dataset, predict_fn, self.batch_size, self.conf_thres, self.iou_thres,
                             self.max_det, self.max_images, layout=self.output_layout)
        ds = self.dataset
        metrics = coco_map(gts, preds, ds.num_classes, ds.names, self.max_det, self.per_class)
        if self.bootstrap:
            from edgeprune.evaluation.bootstrap import map_interval, match_images

            self.last_matches = match_images(gts, preds, ds.num_classes, self.max_det)
            iv = map_interval(self.last_matches, "mAP50-95", self.bootstrap, self.confidence)
            metrics[f"{self.primary}_low"], metrics[f"{self.primary}_high"] = iv.low, iv.high
        return metrics

    def settings(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = labels_fingerprint(self.dataset)
        n = len(self.dataset) if not self.max_images else min(len(self.dataset), int(self.max_images))
        return {"kind": "detection", "data": self.source, "labels_sha256": self._fingerprint, "n_images": n,
                "img_size": list(self.img_size), "conf_thres": self.conf_thres, "iou_thres": self.iou_thres,
                "max_det": self.max_det,
                **({"bootstrap": self.bootstrap, "confidence": self.confidence} if self.bootstrap else {})}
