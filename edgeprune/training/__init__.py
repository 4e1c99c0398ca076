"""Fine-tuning: YOLOv7 loss, trainer, distillation, the finetune(model, steps) interface."""

from edgeprune.training.distill import DistillObjective, raw_head_outputs
from edgeprune.training.finetune import DistillFinetune, LabeledFinetune, LabeledObjective, make_config
from edgeprune.training.loss import LossHyp, YoloLoss, bbox_ciou
from edgeprune.training.trainer import ModelEMA, TrainConfig, Trainer, recalibrate_bn

__all__ = [
    "DistillFinetune",
    "DistillObjective",
    "LabeledFinetune",
    "LabeledObjective",
    "LossHyp",
    "ModelEMA",
    "TrainConfig",
    "Trainer",
    "YoloLoss",
    "bbox_ciou",
    "make_config",
    "raw_head_outputs",
    "recalibrate_bn",
]
