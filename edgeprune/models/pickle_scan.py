"""Which Python globals a torch checkpoint's pickle names, read without unpickling anything.

``torch.save`` writes a zip archive with a ``data.pkl``. ``torch.serialization.
get_unsafe_globals_in_checkpoint`` walks that pickle's opcodes and lists every global outside torch's
weights-only allow-list, which tells an official YOLOv7 checkpoint (``models.yolo.Model``) from an
Ultralytics one (``ultralytics.nn.tasks...``) or from a plain state dict before any loader runs.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from edgeprune.errors import InvalidModelError


def checkpoint_globals(path: str | os.PathLike) -> set[str]:
    """The non-tensor globals of a zip-format torch checkpoint; ``InvalidModelError`` for other files."""
    p = Path(path)
    if not p.is_file():
        raise InvalidModelError(f"model file not found: {p}")
    if not zipfile.is_zipfile(p):
        hint = ""
        if p.suffix.lower() == ".onnx":
            hint = " An ONNX file is already exported: give it to the sweep (onnx: PATH), not to the loader."
        raise InvalidModelError(
            f"{p} is not a zip-format PyTorch checkpoint (torch.save since torch 1.6), so edgeprune cannot "
            f"read it safely.{hint} Supported: official YOLOv7/YOLOv7-tiny training checkpoints, Ultralytics "
            f"YOLOv5u/YOLOv8/YOLO11 detection checkpoints (extra 'ultralytics') and Ultralytics model YAMLs.")
    with zipfile.ZipFile(p) as zf:
        if sum(n == "data.pkl" or n.endswith("/data.pkl") for n in zf.namelist()) != 1:
            raise InvalidModelError(f"{p} is a zip archive but not a torch checkpoint (no single data.pkl)")
    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(p))
    except Exception as e:  # a damaged pickle stream raises ValueError and others
        raise InvalidModelError(f"{p}: the checkpoint's pickle is damaged: {type(e).__name__}: {e}") from e
