"""Detection datasets (YOLO, COCO JSON) and the synthetic inspection data generator."""
