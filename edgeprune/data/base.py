"""What every detection dataset shares: letterboxed items, targets, augmentation, batching.

A dataset is a list of samples (image path + labels in ORIGINAL image coordinates, normalised
xyxy). Items are letterboxed with THE shared letterbox (``edgeprune.runtimes.preprocess``), so
training, evaluation, export and bundles all see identical inputs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from edgeprune.errors import InvalidDataError
from edgeprune.runtimes.preprocess import Letterbox, _as_hw, boxes_to_letterbox, letterbox, to_input

IMG_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ItemInfo:
    """Where an item came from and how it was letterboxed (to map predictions back)."""

    index: int
    path: str
    letterbox: Letterbox
    flipped: bool = False


@dataclass
class Sample:
    """One image and its labels: class ids [n] and boxes [n, 4] as normalised xyxy of the original."""

    path: str
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float64))
    shape: tuple[int, int] | None = None  # (h, w) when known without decoding (COCO JSON)


def find_images(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Image files under ``folder``, sorted by path (deterministic order)."""
    folder = Path(folder)
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if p.is_file() and p.suffix.lower() in IMG_EXTS)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to an HxWx3 BGR uint8 array, or raise InvalidDataError."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise InvalidDataError(f"cannot read image '{path}' (missing or not a decodable image)")
    return img


class DetectionDataset(Dataset):
    """Letterboxed detection items ``(image [3,S,S] float RGB 0..1, targets [n,6], ItemInfo)``.

    Targets rows are ``(0, cls, cx, cy, w, h)`` normalised to the letterboxed input; ``collate``
    fills the image-index column. ``augment`` applies label-consistent flips and colour jitter.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        names: Sequence[str],
        img_size: int | tuple[int, int],
        augment: bool = False,
        cache: bool = False,
        hsv: tuple[float, float, float] = (0.015, 0.5, 0.3),
        fliplr: float = 0.5,
        flipud: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.names = [str(n) for n in names]
        self.img_size = _as_hw(img_size)
        self.augment = augment
        self.cache = cache
        self.hsv, self.fliplr, self.flipud = hsv, fliplr, flipud
        self._rng = np.random.default_rng(seed)
        self._rng_worker: int | None = None
        self._cache: dict[int, tuple[np.ndarray, Letterbox]] = {}

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[np.ndarray, Letterbox]:
        """The letterboxed BGR uint8 image of sample ``index`` and its transform (cached if asked)."""
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        img = read_image(self.samples[index].path)
        out = letterbox(img, self.img_size)
        if self.cache:
            self._cache[index] = out
        return out

    def labels(self, index: int, orig_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Class ids [n] and xyxy boxes [n, 4] in ORIGINAL image pixels for sample ``index``."""
        s = self.samples[index]
        h, w = orig_shape
        return s.classes.copy(), s.boxes * np.array([w, h, w, h], dtype=np.float64)

    def _augment_rng(self) -> np.random.Generator:
        # DataLoader workers start as copies of one dataset: give each its own stream
        info = torch.utils.data.get_worker_info()
        if info is not None and self._rng_worker != info.id:
            self._rng = np.random.default_rng(info.seed)
            self._rng_worker = info.id
        return self._rng

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, ItemInfo]:
        boxed, lb = self.load(index)
        classes, boxes = self.labels(index, lb.orig_shape)
        boxes = boxes_to_letterbox(boxes, lb)
        flipped = False
        if self.augment:
            from edgeprune.data.augment import augment_hsv, flip_boxes

            rng = self._augment_rng()
            boxed = augment_hsv(boxed, rng, *self.hsv)
            nh, nw = lb.new_shape
            if rng.random() < self.fliplr:
                boxed, boxes, flipped = boxed[:, ::-1], flip_boxes(boxes, nw, axis=0), True
            if rng.random() < self.flipud:
                boxed, boxes = boxed[::-1], flip_boxes(boxes, nh, axis=1)
        image = torch.from_numpy(to_input(np.ascontiguousarray(boxed))[0])
        targets = torch.from_numpy(_to_targets(classes, boxes, lb.new_shape))
        return image, targets, ItemInfo(index, self.samples[index].path, lb, flipped)


def _to_targets(classes: np.ndarray, boxes_xyxy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rows ``(0, cls, cx, cy, w, h)`` normalised by the letterboxed input size."""
    nh, nw = shape
    t = np.zeros((len(classes), 6), dtype=np.float32)
    if len(classes):
        b = boxes_xyxy
        t[:, 1] = classes
        t[:, 2] = (b[:, 0] + b[:, 2]) / 2 / nw
        t[:, 3] = (b[:, 1] + b[:, 3]) / 2 / nh
        t[:, 4] = (b[:, 2] - b[:, 0]) / nw
        t[:, 5] = (b[:, 3] - b[:, 1]) / nh
    return t


def targets_to_xyxy(targets: torch.Tensor | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Target rows ``(i, cls, cx, cy, w, h)`` -> xyxy boxes in letterboxed-input pixels."""
    t = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    nh, nw = shape
    cx, cy, w, h = t[:, 2] * nw, t[:, 3] * nh, t[:, 4] * nw, t[:, 5] * nh
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def collate(
    batch: Sequence[tuple[torch.Tensor, torch.Tensor, Any]],
) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Stack items into ``(images [B,3,S,S], targets [n,6] with image index, infos)``."""
    images, targets, infos = zip(*batch)
    rows = []
    for i, t in enumerate(targets):
        t = t.clone()
        t[:, 0] = i
        rows.append(t)
    return torch.stack(images, 0), torch.cat(rows, 0) if rows else torch.zeros((0, 6)), list(infos)
