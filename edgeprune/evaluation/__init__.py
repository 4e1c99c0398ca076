"""Evaluation: mAP with pycocotools, label-free fidelity, the Evaluator protocol.

``Evaluator`` objects score a model: ``evaluator(model) -> {metric: value}`` containing
``evaluator.primary``; ``evaluator.settings()`` is a JSON-able description used in cache keys.
"""

from __future__ import annotations

from edgeprune.evaluation.coco import GroundTruth, coco_map, to_coco_detections, to_coco_gt
from edgeprune.evaluation.detection import (
    DetectionEvaluator,
    Evaluator,
    collect,
    evaluate_predictions,
    labels_fingerprint,
    torch_predictor,
)
from edgeprune.evaluation.fidelity import FidelityEvaluator, model_fingerprint
from edgeprune.evaluation.summary import summarize

__all__ = [
    "DetectionEvaluator",
    "Evaluator",
    "FidelityEvaluator",
    "GroundTruth",
    "coco_map",
    "collect",
    "evaluate_predictions",
    "labels_fingerprint",
    "model_fingerprint",
    "summarize",
    "to_coco_detections",
    "to_coco_gt",
    "torch_predictor",
]
