"""Detection datasets (YOLO, COCO JSON, image folders) and the synthetic inspection data generator.

Items are ``(image [3,S,S] float RGB 0..1, targets [n,6] (0, cls, cx, cy, w, h) normalised to the
letterboxed input, ItemInfo)``; ``collate`` batches them into ``(images, targets, infos)``.
Attributes load lazily so ``edgeprune.data.synthetic`` (the CLI) does not import torch.
"""

from __future__ import annotations

from edgeprune._lazy import lazy_getattr

_LAZY = {
    "DetectionDataset": "edgeprune.data.base",
    "ItemInfo": "edgeprune.data.base",
    "Sample": "edgeprune.data.base",
    "collate": "edgeprune.data.base",
    "targets_to_xyxy": "edgeprune.data.base",
    "find_images": "edgeprune.data.base",
    "read_image": "edgeprune.data.base",
    "YoloDataset": "edgeprune.data.yolo",
    "parse_label_file": "edgeprune.data.yolo",
    "read_data_yaml": "edgeprune.data.yolo",
    "CocoDataset": "edgeprune.data.coco",
    "ImageFolder": "edgeprune.data.folder",
    "as_dataset": "edgeprune.data.folder",
}
_SUBMODULES = {"synthetic", "augment", "base", "yolo", "coco", "folder"}

__all__ = sorted(_LAZY) + sorted(_SUBMODULES)


__getattr__ = lazy_getattr("edgeprune.data", _LAZY, _SUBMODULES)
