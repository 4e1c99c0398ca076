"""COCO JSON detection datasets, as the same letterboxed items as ``YoloDataset``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.data.base import DetectionDataset, Sample
from edgeprune.errors import InvalidDataError


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise InvalidDataError(f"annotation file not found: '{path}'")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvalidDataError(f"{path}: not valid JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InvalidDataError(f"{path}: missing or invalid '{key}' list")
    return data


class CocoDataset(DetectionDataset):
    """Images in ``images_dir`` with a COCO ``annotation_json`` (bbox = [x, y, w, h] in pixels).

    Category ids are mapped to contiguous class indices in increasing id order; ``names`` keeps the
    category names and ``category_ids`` the original ids. Crowd annotations are skipped.
    """

    def __init__(
        self,
        images_dir: str | os.PathLike,
        annotation_json: str | os.PathLike,
        img_size: int | tuple[int, int],
        augment: bool = False,
        *,
        cache: bool = False,
        **augment_options: Any,
    ) -> None:
        images_dir, ann_path = Path(images_dir), Path(annotation_json)
        if not images_dir.is_dir():
            raise InvalidDataError(f"images folder not found: '{images_dir}'")
        data = _load_json(ann_path)
        cats = sorted(data["categories"], key=lambda c: int(c["id"]))
        self.category_ids = [int(c["id"]) for c in cats]
        cat_to_cls = {cid: i for i, cid in enumerate(self.category_ids)}
        per_image: dict[int, list[tuple[int, list[float]]]] = {}
        for ann in data["annotations"]:
            aid = ann.get("id", "?")
            if ann.get("iscrowd", 0):
                continue
            try:
                img_id, cid = int(ann["image_id"]), int(ann["category_id"])
                bbox = [float(v) for v in ann["bbox"]]
            except (KeyError, TypeError, ValueError):
                raise InvalidDataError(f"{ann_path}: malformed annotation {aid}") from None
            if cid not in cat_to_cls:
                raise InvalidDataError(f"{ann_path}: annotation {aid} has unknown category {cid}")
            if len(bbox) != 4 or bbox[2] <= 0 or bbox[3] <= 0:
                raise InvalidDataError(f"{ann_path}: annotation {aid} has an invalid bbox {bbox}")
            per_image.setdefault(img_id, []).append((cat_to_cls[cid], bbox))
        samples = []
        for img in sorted(data["images"], key=lambda im: str(im.get("file_name", ""))):
            try:
                img_id, name = int(img["id"]), img["file_name"]
                w, h = float(img["width"]), float(img["height"])
            except (KeyError, TypeError, ValueError):
                raise InvalidDataError(f"{ann_path}: malformed image entry {img}") from None
            anns = per_image.get(img_id, [])
            classes = np.array([c for c, _ in anns], np.int64)
            boxes = np.array([[x / w, y / h, (x + bw) / w, (y + bh) / h] for _, (x, y, bw, bh) in anns])
            samples.append(Sample(str(images_dir / name), classes, boxes.reshape(-1, 4).clip(0, 1),
                                  (int(h), int(w))))
        if not samples:
            raise InvalidDataError(f"{ann_path}: no images")
        super().__init__(samples, [str(c.get("name", c["id"])) for c in cats], img_size,
                         augment=augment, cache=cache, **augment_options)
