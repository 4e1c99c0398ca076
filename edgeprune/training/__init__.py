"""Fine-tuning: YOLOv7 loss, trainer, distillation, the finetune(model, steps) interface."""
