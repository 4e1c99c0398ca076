"""The one letterbox preprocessing shared by training, evaluation, export and bundles.

Resize keeping aspect ratio, pad to the network size with a constant value (114), convert BGR to
RGB, scale to [0, 1], NCHW float32. ``Letterbox`` records the exact transform so boxes map back to
the original image: x_orig = (x - pad_x) / scale_x (per axis, since resizing rounds pixel sizes).
No torch here: bundles and the on-device agent use it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edgeprune.errors import InvalidDataError

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """How an image of ``orig_shape`` (h, w) was placed into ``new_shape`` (h, w)."""

    orig_shape: tuple[int, int]
    new_shape: tuple[int, int]
    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_dict(self) -> dict:
        return asdict(self)


def _as_hw(size: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if len(size) != 2:
        raise InvalidDataError(f"input size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def letterbox_transform(orig_shape: tuple[int, int], size: int | tuple[int, int]) -> Letterbox:
    """Compute the letterbox that fits an image of ``orig_shape`` (h, w) into ``size``."""
    h, w = int(orig_shape[0]), int(orig_shape[1])
    if h <= 0 or w <= 0:
        raise InvalidDataError(f"image has an empty shape {orig_shape}")
    nh, nw = _as_hw(size)
    r = min(nh / h, nw / w)
    rw, rh = max(1, int(round(w * r))), max(1, int(round(h * r)))
    pad_x, pad_y = (nw - rw) // 2, (nh - rh) // 2
    return Letterbox((h, w), (nh, nw), rw / w, rh / h, pad_x, pad_y)


def letterbox(
    image: np.ndarray, size: int | tuple[int, int], pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox an HxWxC uint8 image into ``size``; returns the padded image and the transform."""
    import cv2

    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InvalidDataError(f"expected an HxWx3 image array, got shape {shape}")
    lb = letterbox_transform(image.shape[:2], size)
    nh, nw = lb.new_shape
    rw = int(round(lb.orig_shape[1] * lb.scale_x))
    rh = int(round(lb.orig_shape[0] * lb.scale_y))
    if (rh, rw) != image.shape[:2]:
        interp = cv2.INTER_AREA if rw < image.shape[1] else cv2.INTER_LINEAR
        image = cv2.resize(image, (rw, rh), interpolation=interp)
    out = np.full((nh, nw, 3), pad_value, dtype=np.uint8)
    out[lb.pad_y : lb.pad_y + rh, lb.pad_x : lb.pad_x + rw] = image
    return out, lb


def to_input(image_bgr: np.ndarray) -> np.ndarray:
    """A letterboxed BGR uint8 image -> float32 [1, 3, H, W], RGB, scaled to [0, 1]."""
    rgb = image_bgr[:, :, ::-1].transpose(2, 0, 1)
    return np.ascontiguousarray(rgb, dtype=np.float32)[None] / np.float32(255.0)


def preprocess(
    image_bgr: np.ndarray, size: int | tuple[int, int], pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, Letterbox]:
    """Letterbox then convert: the network input for one BGR image, and the transform."""
    boxed, lb = letterbox(image_bgr, size, pad_value)
    return to_input(boxed), lb


def boxes_to_letterbox(boxes_xyxy: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Map xyxy boxes from original image pixels into network-input pixels."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]] * lb.scale_x + lb.pad_x
    b[:, [1, 3]] = b[:, [1, 3]] * lb.scale_y + lb.pad_y
    return b


def boxes_from_letterbox(boxes_xyxy: np.ndarray, lb: Letterbox, clip: bool = True) -> np.ndarray:
    """Map xyxy boxes from network-input pixels back to original image pixels (the inverse)."""
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = (b[:, [0, 2]] - lb.pad_x) / lb.scale_x
    b[:, [1, 3]] = (b[:, [1, 3]] - lb.pad_y) / lb.scale_y
    if clip:
        h, w = lb.orig_shape
        b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
        b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    return b
