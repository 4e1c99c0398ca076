"""YOLO-format datasets: ``root/images/*`` + ``root/labels/<stem>.txt``, or a ``data.yaml``.

``data.yaml`` follows Ultralytics (``path``, ``train``/``val``/``test`` as folders, .txt lists or
lists of those, ``names`` as list or {id: name}); our generator writes the simple form
(``train: images``, ``val: images``, ``names: [...]``), resolved relative to the yaml's folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgeprune.data.base import IMG_EXTS, DetectionDataset, Sample, find_images
from edgeprune.errors import InvalidDataError

_TOL = 0.01  # label coordinates may overshoot [0, 1] by rounding; beyond this they are wrong


def label_path_for(image_path: str | os.PathLike) -> Path:
    """The label file of an image: the last ``images`` folder swapped for ``labels``, suffix .txt."""
    p = Path(image_path)
    parts = list(p.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return p.with_suffix(".txt")


def parse_label_file(
    path: str | os.PathLike, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Read a YOLO label file -> (class ids [n], normalised xyxy boxes [n, 4]).

    Lines are ``cls cx cy w h`` (or ``cls x1 y1 x2 y2 ...`` polygons, boxed). A missing file means
    no objects. Anything malformed raises InvalidDataError naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return np.zeros((0,), np.int64), np.zeros((0, 4), np.float64)
    classes, boxes = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            where = f"{path}:{lineno}"
            try:
                values = [float(v) for v in parts]
            except ValueError:
                raise InvalidDataError(f"{where}: non-numeric value in label line {line.strip()!r}") from None
            cls = values[0]
            if cls != int(cls) or cls < 0:
                raise InvalidDataError(f"{where}: class id must be a non-negative integer, got {parts[0]!r}")
            if num_classes is not None and cls >= num_classes:
                raise InvalidDataError(f"{where}: class id {int(cls)} >= number of classes {num_classes}")
            coords = np.array(values[1:], dtype=np.float64)
            if len(values) == 5:
                cx, cy, w, h = coords
                box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
            elif len(values) >= 7 and len(values) % 2 == 1:
                xy = coords.reshape(-1, 2)
                box = np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()])
            else:
                raise InvalidDataError(
                    f"{where}: expected 'cls cx cy w h' (5 values), got {len(values)} values"
                )
            if not np.isfinite(coords).all() or coords.min() < -_TOL or coords.max() > 1 + _TOL:
                raise InvalidDataError(f"{where}: coordinates must be normalised to [0, 1], got {parts[1:]}")
            box = box.clip(0.0, 1.0)
            if box[2] <= box[0] or box[3] <= box[1]:
                raise InvalidDataError(f"{where}: box has zero or negative width/height")
            classes.append(int(cls))
            boxes.append(box)
    if not classes:
        return np.zeros((0,), np.int64), np.zeros((0, 4), np.float64)
    return np.asarray(classes, np.int64), np.stack(boxes)


def _names_from(value: Any, where: str) -> list[str]:
    if isinstance(value, dict):
        try:
            keys = sorted(int(k) for k in value)
        except (TypeError, ValueError):
            raise InvalidDataError(f"{where}: 'names' keys must be integers") from None
        if keys != list(range(len(keys))):
            raise InvalidDataError(f"{where}: 'names' ids must be 0..{len(keys) - 1}")
        return [str(value[k] if k in value else value[str(k)]) for k in keys]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise InvalidDataError(f"{where}: 'names' must be a list or a mapping of id -> name")


def read_data_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """Load a data.yaml -> dict with ``root`` (Path), ``names`` (list) and the raw split entries."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InvalidDataError(f"data.yaml not found: '{path}'")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidDataError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(cfg, dict):
        raise InvalidDataError(f"{path}: expected a mapping at the top level")
    if "names" not in cfg:
        raise InvalidDataError(f"{path}: missing 'names'")
    names = _names_from(cfg["names"], str(path))
    root = Path(cfg.get("path") or ".")
    if not root.is_absolute():
        # relative to the yaml's folder (our generator); else to the working directory (Ultralytics habit)
        root = root if (not (path.parent / root).exists() and root.exists()) else path.parent / root
    return {"root": root.resolve(), "names": names, "cfg": cfg, "yaml": path}


def _inside(p: Path, root: Path, where: str) -> Path:
    """``p`` (relative to ``root``) if it stays inside the dataset root, symlinks resolved; else an error."""
    full = p if p.is_absolute() else root / p
    try:
        full.resolve().relative_to(root.resolve())
    except ValueError:
        raise InvalidDataError(f"{where}: '{p}' is outside the dataset root {root} (set 'path' to a folder "
                               f"holding every split)") from None
    return full


def _images_of(entry: Any, root: Path, where: str) -> list[Path]:
    """Images of one split entry: a folder, a .txt list of images, an image file, or a list of those."""
    if isinstance(entry, (list, tuple)):
        return [p for e in entry for p in _images_of(e, root, where)]
    p = _inside(Path(str(entry)), root, where)
    if p.is_dir():
        return find_images(p)
    if p.suffix.lower() == ".txt" and p.is_file():
        lines = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
        return [_inside(Path(ln), root, f"{where} ({p.name})") for ln in lines]
    if p.suffix.lower() in IMG_EXTS and p.is_file():
        return [p]
    raise InvalidDataError(f"{where}: split entry '{entry}' is not a folder, image list or image ({p})")


def resolve_yolo(
    root: str | os.PathLike, split: str | None = None, augment: bool = False
) -> tuple[list[Path], list[str] | None, str]:
    """Image paths, class names (None if unknown) and a description for a YOLO root or data.yaml.

    ``split`` picks ``train``/``val``/``test`` from a data.yaml; None means ``train`` when
    augmenting (training) else ``val``, falling back to whichever exists.
    """
    root = Path(root)
    yaml_path = None
    if root.suffix.lower() == ".json":
        raise InvalidDataError(
            f"'{root}' is a JSON file, not a YOLO folder or data.yaml; for COCO annotations build "
            f"CocoDataset(images_dir, '{root}', img_size) from edgeprune.data and pass that dataset instead")
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml"):
        yaml_path = root
    elif root.is_dir() and (root / "data.yaml").is_file():
        yaml_path = root / "data.yaml"
    elif not root.exists():
        raise InvalidDataError(f"dataset not found: '{root}'")

    if yaml_path is not None:
        info = read_data_yaml(yaml_path)
        cfg = info["cfg"]
        order = [split] if split else (["train", "val", "test"] if augment else ["val", "train", "test"])
        key = next((k for k in order if cfg.get(k)), None)
        if key is None:
            if split:
                raise InvalidDataError(f"{yaml_path}: no '{split}' split")
            images_dir = info["root"] / "images"  # simple form: names only, images/ next to it
            if not images_dir.is_dir():
                raise InvalidDataError(f"{yaml_path}: no train/val entry and no images folder '{images_dir}'")
            return find_images(images_dir), info["names"], str(yaml_path)
        return _images_of(cfg[key], info["root"], str(yaml_path)), info["names"], f"{yaml_path}:{key}"

    images_dir = root / "images"
    if not images_dir.is_dir():
        raise InvalidDataError(f"'{root}' has no images folder (expected '{images_dir}') and no data.yaml")
    return find_images(images_dir), None, str(root)


class YoloDataset(DetectionDataset):
    """A YOLO-format dataset (folder with images/ and labels/, or a data.yaml) as letterboxed items."""

    def __init__(
        self,
        root: str | os.PathLike,
        img_size: int | tuple[int, int],
        augment: bool = False,
        *,
        split: str | None = None,
        names: Sequence[str] | None = None,
        cache: bool = False,
        **augment_options: Any,
    ) -> None:
        images, found_names, self.source = resolve_yolo(root, split, augment)
        if not images:
            raise InvalidDataError(f"no images found in {self.source}")
        names = list(names) if names is not None else found_names
        samples = []
        for img in images:
            classes, boxes = parse_label_file(label_path_for(img), len(names) if names else None)
            samples.append(Sample(str(img), classes, boxes))
        if names is None:
            top = max((int(s.classes.max()) for s in samples if len(s.classes)), default=-1)
            names = [f"class{i}" for i in range(top + 1)]
        self.root = Path(root)
        super().__init__(samples, names, img_size, augment=augment, cache=cache, **augment_options)
