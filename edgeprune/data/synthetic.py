"""Synthetic surface-inspection data: defects on metal / fabric / PCB-like / painted surfaces.

``generate(out_dir, n_images, seed)`` writes a YOLO dataset (``images/``, ``labels/``, ``data.yaml``)
with 0-4 defects per image of the classes ``scratch, dent, stain, crack, missing_hole``. It is made
hard on purpose (small and low-contrast defects, texture marks and drilled pads that are not
defects, lighting gradients, blur, noise, occasional overlaps) but each class looks distinct.
Deterministic: image i depends only on (seed, i), so the same seed gives byte-identical files.
No torch here.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np

from edgeprune.data.synthetic_draw import CLASSES, draw_defect, draw_distractors, lighting, texture
from edgeprune.errors import InvalidDataError
from edgeprune.fileio import atomic_write_text

__all__ = ["CLASSES", "generate", "generate_coco", "generate_image", "generate_video", "output_sha256"]

_GENERATOR_TAG = "edgeprune.data.synthetic"
_NAME = re.compile(r"^\d{6}\.(jpg|txt)$")
_N_DEFECTS_P = (0.1, 0.3, 0.3, 0.2, 0.1)  # P(0..4 defects in an image)


def _iou(a: tuple, b: tuple) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def generate_image(
    rng: np.random.Generator, img_size: tuple[int, int] = (320, 320), max_defects: int = 4
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """One BGR uint8 image and its defects as ``(class_id, (x0, y0, x1, y1) pixel box)``."""
    h, w = int(img_size[0]), int(img_size[1])
    img, style = texture(rng, h, w)
    pad_radius = rng.uniform(3.5, 9.0) * style.scale
    draw_distractors(rng, img, style, pad_radius)
    n = int(rng.choice(len(_N_DEFECTS_P), p=_N_DEFECTS_P))
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(min(n, max_defects)):
        cls = int(rng.integers(len(CLASSES)))
        allow_overlap = rng.random() < 0.15
        for _attempt in range(25):
            margin = 0.08 * min(h, w)
            cx, cy = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
            trial = img.copy()
            box = draw_defect(rng, trial, style, cls, cx, cy, pad_radius)
            if box is None:
                continue
            # reject boxes hugging the border (partly drawn defects) and, mostly, overlaps
            if box[0] <= 0 or box[1] <= 0 or box[2] >= w or box[3] >= h:
                continue
            if not allow_overlap and any(_iou(box, b) > 0 for _, b in objects):
                continue
            img = trial
            objects.append((cls, box))
            break
    return lighting(rng, img), objects


def _label_text(objects: list, h: int, w: int) -> str:
    lines = []
    for cls, (x0, y0, x1, y1) in objects:
        cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _prepare(out_dir: Path) -> None:
    """Refuse to mix with foreign files; clear a previous (even interrupted) synthetic dataset."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidDataError(f"output path '{out_dir}' exists and is not a folder")
    if not out_dir.is_dir():
        return
    yaml_path = out_dir / "data.yaml"
    ours = all(p.name in ("images", "labels", "data.yaml") for p in out_dir.iterdir())
    ours = ours and (not yaml_path.exists() or _GENERATOR_TAG in yaml_path.read_text(encoding="utf-8"))
    files = [p for sub in ("images", "labels") if (out_dir / sub).is_dir() for p in (out_dir / sub).iterdir()]
    if not ours or not all(_NAME.match(p.name) for p in files):
        raise InvalidDataError(f"output folder '{out_dir}' is not empty and not a synthetic dataset")
    if yaml_path.exists():
        yaml_path.unlink()  # first, so an interrupted rerun never looks complete
    for p in files:
        p.unlink()


def generate(
    out_dir: str | os.PathLike,
    n_images: int,
    seed: int = 0,
    img_size: tuple[int, int] = (320, 320),
    *,
    max_defects: int = 4,
    jpeg_quality: int = 92,
    progress: bool | None = None,
) -> Path:
    """Write ``n_images`` synthetic inspection images + YOLO labels + data.yaml; returns ``out_dir``."""
    from tqdm import tqdm

    if int(n_images) < 1:
        raise InvalidDataError(f"n_images must be >= 1, got {n_images}")
    h, w = int(img_size[0]), int(img_size[1])
    if h < 64 or w < 64:
        raise InvalidDataError(f"img_size must be at least 64x64, got {img_size}")
    out_dir = Path(out_dir)
    _prepare(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "labels").mkdir(parents=True, exist_ok=True)
    disable = None if progress is None else not progress
    for i in tqdm(range(int(n_images)), desc="synthetic images", unit="img", disable=disable, leave=False):
        rng = np.random.default_rng([int(seed), i])
        img, objects = generate_image(rng, (h, w), max_defects)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
        if not ok:
            raise InvalidDataError("OpenCV failed to encode a JPEG image")
        # plain writes for the many small files; data.yaml, written atomically last, marks completion
        (out_dir / "images" / f"{i:06d}.jpg").write_bytes(buf.tobytes())
        (out_dir / "labels" / f"{i:06d}.txt").write_text(_label_text(objects, h, w), encoding="utf-8")
    names = ", ".join(CLASSES)
    atomic_write_text(
        out_dir / "data.yaml",
        f"# synthetic inspection data\ngenerator: {_GENERATOR_TAG}\nseed: {int(seed)}\n"
        f"n_images: {int(n_images)}\nimg_size: [{h}, {w}]\ntrain: images\nval: images\n"
        f"nc: {len(CLASSES)}\nnames: [{names}]\n",
    )
    return out_dir


def generate_coco(
    images_dir: str | os.PathLike,
    annotation_json: str | os.PathLike,
    n_images: int,
    seed: int = 0,
    img_size: tuple[int, int] = (320, 320),
) -> Path:
    """The images ``generate`` draws, with COCO annotations (bbox [x, y, w, h] px) instead of YOLO labels."""
    h, w = int(img_size[0]), int(img_size[1])
    images_dir, ann = Path(images_dir), Path(annotation_json)
    images_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    for i in range(int(n_images)):
        img, objects = generate_image(np.random.default_rng([int(seed), i]), (h, w))
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(images_dir / name), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
        for cls, (x0, y0, x1, y1) in objects:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cls + 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)})
    cats = [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]
    atomic_write_text(ann, json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann


def output_sha256(
    n_images: int, seed: int = 0, img_size: tuple[int, int] = (320, 320), max_defects: int = 4
) -> dict[str, str]:
    """SHA-256 of what ``generate`` would draw (raw pixels before JPEG, and the label text).

    Independent of the output path and the JPEG encoder, so a recorded value tells whether a dataset
    regenerated today is the one a model was measured on.
    """
    h, w = int(img_size[0]), int(img_size[1])
    pixels, labels = hashlib.sha256(), hashlib.sha256()
    for i in range(int(n_images)):
        img, objects = generate_image(np.random.default_rng([int(seed), i]), (h, w), max_defects)
        pixels.update(np.ascontiguousarray(img).tobytes())
        labels.update(f"{i:06d}\n{_label_text(objects, h, w)}".encode())
    return {"pixels_sha256": pixels.hexdigest(), "labels_sha256": labels.hexdigest()}


def generate_video(
    path: str | os.PathLike,
    n_frames: int = 120,
    seed: int = 0,
    size: tuple[int, int] = (320, 480),
    *,
    fps: float = 15.0,
    speed: int = 6,
) -> Path:
    """Write a web-inspection video: a continuous strip of material with defects scrolls under the
    camera (sheet metal, fabric, PCB panels, as in the training images); returns ``path``.

    ``.avi`` is written with MJPG, anything else (``.mp4``) with mp4v.
    """
    h, w = int(size[0]), int(size[1])
    if n_frames < 1 or h < 64 or w < 64:
        raise InvalidDataError(f"need n_frames >= 1 and size >= 64x64, got {n_frames}, {size}")
    # panels as tall as the frame, edge to edge, so every frame looks like the images the model saw
    length = w + n_frames * speed + h
    strip = np.zeros((h, length, 3), np.uint8)
    x = k = 0
    while x < length:
        img, _ = generate_image(np.random.default_rng([int(seed), 1 << 21, k]), (h, h))
        n = min(h, length - x)
        strip[:, x : x + n] = img[:, :n]
        x += h
        k += 1
    belt = strip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("MJPG" if path.suffix.lower() == ".avi" else "mp4v"))
    writer = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
    if not writer.isOpened():
        raise InvalidDataError(f"OpenCV cannot write video '{path}' (codec not available)")
    try:
        frame_rng = np.random.default_rng([int(seed), 1 << 22])
        for f in range(int(n_frames)):
            frame = belt[:, f * speed : f * speed + w].astype(np.float32)
            frame += frame_rng.standard_normal(frame.shape, dtype=np.float32) * 2.5
            writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    finally:
        writer.release()
    return path
