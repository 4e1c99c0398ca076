"""Light, label-consistent training augmentation: HSV/brightness jitter and flips."""

from __future__ import annotations

import numpy as np


def augment_hsv(
    image_bgr: np.ndarray, rng: np.random.Generator, hgain: float = 0.015, sgain: float = 0.5,
    vgain: float = 0.3,
) -> np.ndarray:
    """Random hue/saturation/value gains on a BGR uint8 image (YOLOv5-style lookup tables)."""
    import cv2

    if not (hgain or sgain or vgain):
        return image_bgr
    r = rng.uniform(-1, 1, 3) * np.array([hgain, sgain, vgain]) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2HSV))
    x = np.arange(0, 256, dtype=np.float64)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    hsv = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def flip_boxes(boxes_xyxy: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Mirror xyxy pixel boxes in an image of ``size`` pixels along x (axis 0) or y (axis 1)."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    lo, hi = (0, 2) if axis == 0 else (1, 3)
    b[:, lo], b[:, hi] = size - b[:, hi], size - b[:, lo]
    return b
