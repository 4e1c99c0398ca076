"""Open official YOLOv7 / YOLOv7-tiny training checkpoints without the official code or running pickle code.

A ``best.pt``/``last.pt`` of the official trainer is a pickled ``models.yolo.Model`` (fp16) under
``model`` and/or ``ema``. It is read with ``torch.load(weights_only=True)``: torch's restricted
unpickler, which refuses every global it was not told about. It is told only the official class
names, each mapped to an inert stand-in that records the object's state and runs nothing. The
recorded tensors then map one to one, in order, onto edgeprune's ``yolov7`` / ``yolov7_tiny``.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from edgeprune.errors import InvalidModelError
from edgeprune.models.head import Detector

# The globals a training checkpoint of cfg/training/yolov7.yaml or yolov7-tiny.yaml names.
OFFICIAL_CLASSES = (
    "models.yolo.Model", "models.yolo.IDetect",
    "models.common.Conv", "models.common.Concat", "models.common.MP", "models.common.SP",
    "models.common.SPPCSPC", "models.common.RepConv", "models.common.ImplicitA", "models.common.ImplicitM",
    "torch.nn.modules.container.Sequential", "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.conv.Conv2d", "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.activation.SiLU", "torch.nn.modules.activation.LeakyReLU",
    "torch.nn.modules.pooling.MaxPool2d", "torch.nn.modules.upsampling.Upsample",
)
_DEPLOY_HINT = ("yolov7x/w6/e6/d6/e6e, deploy (re-parameterised: Detect, rbr_reparam) and custom cfgs "
                "are not mapped; supported: training checkpoints of yolov7.yaml and yolov7-tiny.yaml")


class StandIn:
    """Inert replacement for an official class: keeps the pickled ``__dict__``, executes nothing."""

    official_name = "?"

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {}

    def child_modules(self) -> dict[str, StandIn]:
        mods = self.state.get("_modules") or {}
        return {k: v for k, v in mods.items() if isinstance(v, StandIn)}

    def attr(self, name: str, default: Any = None) -> Any:
        return self.state.get(name, default)


def _stand_in(name: str) -> type:
    return type(name.rsplit(".", 1)[1], (StandIn,), {"official_name": name})


STAND_INS = {name: _stand_in(name) for name in OFFICIAL_CLASSES}


def unknown_globals(found: set[str]) -> list[str]:
    """Official-code classes (``models.*``) in a checkpoint that edgeprune has no stand-in for.

    Any other global is left to torch's restricted unpickler, which refuses it by name.
    """
    return sorted(g for g in found if g.startswith("models.") and g not in STAND_INS)


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Unpickle with torch's weights-only unpickler, official classes mapped to ``StandIn`` objects."""
    safe = [(cls, name) for name, cls in STAND_INS.items()]
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(e))
        what = f"it names the global {found.group(1)}" if found else str(e).splitlines()[-1][:200]
        raise InvalidModelError(
            f"{path}: refused to unpickle: {what}, which is not an official YOLOv7 class or tensor data "
            f"(only those are read; nothing in the file is executed)") from None


def _state_tensors(mod: StandIn, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) in ``state_dict`` order: own parameters, persistent buffers, then children."""
    skip = mod.attr("_non_persistent_buffers_set") or set()
    for key in ("_parameters", "_buffers"):
        for name, t in (mod.attr(key) or {}).items():
            if isinstance(t, torch.Tensor) and name not in skip:
                yield prefix + name, t
    for name, child in mod.child_modules().items():
        yield from _state_tensors(child, f"{prefix}{name}.")


def _walk(mod: StandIn) -> Iterator[StandIn]:
    yield mod
    for child in mod.child_modules().values():
        yield from _walk(child)


def _pick_model(ckpt: Any, path: Path) -> StandIn:
    if isinstance(ckpt, StandIn):
        ckpt = {"model": ckpt}
    if not isinstance(ckpt, dict):
        raise InvalidModelError(f"{path}: expected the official checkpoint dict, found {type(ckpt).__name__}")
    for key in ("ema", "model"):  # the EMA weights are the ones official evaluation and strip use
        m = ckpt.get(key)
        if isinstance(m, StandIn) and m.official_name == "models.yolo.Model":
            return m
    raise InvalidModelError(
        f"{path}: no models.yolo.Model under 'ema' or 'model' (keys: {sorted(map(str, ckpt))[:10]})")


def _layers(model: StandIn, path: Path) -> list[StandIn]:
    seq = model.child_modules().get("model")
    layers = list(seq.child_modules().values()) if seq is not None else []
    if not layers or layers[-1].official_name != "models.yolo.IDetect":
        last = layers[-1].official_name if layers else "nothing"
        raise InvalidModelError(f"{path}: the model does not end in IDetect (found {last}); {_DEPLOY_HINT}")
    return layers


def _names(model: StandIn, nc: int) -> list[str] | None:
    names = model.attr("names")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if isinstance(names, (list, tuple)) and len(names) == nc and all(isinstance(n, str) for n in names):
        return list(names)
    return None


def load_official_yolov7(path: str | os.PathLike) -> Detector:
    """An official YOLOv7/YOLOv7-tiny training checkpoint as edgeprune's ``yolov7``/``yolov7_tiny`` (fp32)."""
    from edgeprune.models.yolov7 import yolov7, yolov7_tiny

    path = Path(path)
    official = _pick_model(read_checkpoint(path), path)
    layers = _layers(official, path)
    det = layers[-1]
    tiny = not any(m.official_name == "models.common.RepConv" for m in layers)
    nc = int(det.attr("nc", 0))
    builder = yolov7_tiny if tiny else yolov7
    model = builder(nc, _names(official, nc))
    det_prefix = f"model.{len(layers) - 1}."
    src = [(k, t) for k, t in _state_tensors(official)
           if k not in (det_prefix + "anchors", det_prefix + "anchor_grid")]
    dst = [(k, t) for k, t in model.state_dict().items() if k not in ("detect.anchors", "detect.stride")]
    kind = "yolov7-tiny" if tiny else "yolov7"
    if len(src) != len(dst) or any(a.shape != b.shape for (_, a), (_, b) in zip(src, dst)):
        bad = next(((ka, tuple(a.shape), kb, tuple(b.shape)) for (ka, a), (kb, b) in zip(src, dst)
                    if a.shape != b.shape), None)
        raise InvalidModelError(
            f"{path}: the checkpoint's {len(src)} tensors do not match {kind}'s {len(dst)} "
            f"(first difference: {bad}); {_DEPLOY_HINT}")
    state = {kb: a.detach().float() if a.is_floating_point() else a.detach().clone()
             for (_, a), (kb, _) in zip(src, dst)}
    state["detect.anchors"] = _anchors_px(det, path).view_as(model.detect.anchors)
    state["detect.stride"] = _stride(official, det, model.detect.stride)
    model.load_state_dict(state, strict=True)
    # BatchNorm eps/momentum are attributes, not state: take the checkpoint's
    ours = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    theirs = [m for m in _walk(official) if m.official_name.endswith("BatchNorm2d")]
    for a, b in zip(ours, theirs):
        a.eps = float(b.attr("eps", a.eps))
        a.momentum = b.attr("momentum", a.momentum)
    model.source = {"format": "yolov7-official", "architecture": kind, "path": str(path)}
    return model.float().eval()


def _anchors_px(det: StandIn, path: Path) -> torch.Tensor:
    """Anchors in input pixels: ``anchor_grid`` as written (autoanchor updates it), else anchors x stride."""
    bufs = det.attr("_buffers") or {}
    grid = bufs.get("anchor_grid")
    if isinstance(grid, torch.Tensor):
        return grid.detach().float().reshape(-1, 2)
    a, s = bufs.get("anchors"), det.attr("stride")
    if isinstance(a, torch.Tensor) and isinstance(s, torch.Tensor):
        return (a.detach().float() * s.float().view(-1, 1, 1)).reshape(-1, 2)
    raise InvalidModelError(f"{path}: IDetect has neither anchor_grid nor anchors with a stride")


def _stride(model: StandIn, det: StandIn, default: torch.Tensor) -> torch.Tensor:
    for s in (det.attr("stride"), model.attr("stride")):
        if isinstance(s, torch.Tensor) and s.numel() == default.numel():
            return s.detach().float().clone()
    return default.clone()


def is_official_yolov7(found: set[str]) -> bool:
    """True when the pickle's globals name the official trainer's model class."""
    return "models.yolo.Model" in found

