"""Unlabeled images (label-free fidelity, distillation) as the same items as labeled datasets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgeprune.data.base import DetectionDataset, Sample, find_images
from edgeprune.errors import InvalidDataError


class ImageFolder(DetectionDataset):
    """Every image under ``root`` (recursive, sorted), or an explicit list of image paths.

    Items carry empty targets ``[0, 6]`` so ``collate`` and the evaluators treat them like labeled
    datasets. ``max_images`` keeps the first N (deterministic order).
    """

    def __init__(
        self,
        root: str | os.PathLike | Sequence[str | os.PathLike],
        img_size: int | tuple[int, int],
        augment: bool = False,
        *,
        max_images: int | None = None,
        cache: bool = False,
        **augment_options: Any,
    ) -> None:
        if isinstance(root, (str, os.PathLike)):
            root = Path(root)
            if root.suffix.lower() == ".json":
                raise InvalidDataError(f"'{root}' is a JSON file; give the folder of the images instead")
            if not root.is_dir():
                raise InvalidDataError(f"image folder not found: '{root}'")
            paths = find_images(root)
        else:
            paths = [Path(p) for p in root]
        if max_images is not None:
            paths = paths[: int(max_images)]
        if not paths:
            raise InvalidDataError(f"no images found in '{root}'")
        super().__init__([Sample(str(p)) for p in paths], [], img_size, augment=augment, cache=cache,
                         **augment_options)


def as_dataset(
    data: Any, img_size: int | tuple[int, int], labeled: bool = True, max_images: int | None = None
) -> DetectionDataset:
    """A dataset from a dataset instance, a YOLO root / data.yaml (labeled) or an image folder / list."""
    if isinstance(data, DetectionDataset):
        return data
    if labeled:
        from edgeprune.data.yolo import YoloDataset

        if not isinstance(data, (str, os.PathLike)):
            kind = type(data).__name__
            raise InvalidDataError(f"expected a dataset, a data.yaml or a YOLO folder, got {kind}")
        return YoloDataset(data, img_size)
    return ImageFolder(data, img_size, max_images=max_images)
