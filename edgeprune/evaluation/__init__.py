"""Evaluation: mAP with pycocotools, label-free fidelity, the Evaluator protocol."""
