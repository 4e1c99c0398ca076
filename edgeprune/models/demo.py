"""The shipped demo model: a yolov7_tiny trained on synthetic surface-defect images.

Reproduce it with ``examples/train_demo_model.py``; the JSON next to the weights records the
training settings, the time it took and the mAP measured on the fixed synthetic val set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgeprune.errors import EdgepruneError

WEIGHTS_DIR = Path(__file__).with_name("weights")
DEMO_WEIGHTS = WEIGHTS_DIR / "yolov7_tiny_synth.pt"
DEMO_INFO = WEIGHTS_DIR / "yolov7_tiny_synth.json"


def demo_model_info() -> dict[str, Any]:
    """The demo model's JSON record (names, img_size, training settings, measured mAP)."""
    if not DEMO_INFO.exists():
        raise EdgepruneError(
            f"demo model info not found at {DEMO_INFO}; run examples/train_demo_model.py to create it"
        )
    return json.loads(DEMO_INFO.read_text(encoding="utf-8"))


def demo_model(device: str | torch.device = "cpu") -> nn.Module:
    """The trained 5-class yolov7_tiny demo model in eval mode, with ``img_size`` and ``names`` set."""
    if not DEMO_WEIGHTS.exists():
        raise EdgepruneError(
            f"demo model weights not found at {DEMO_WEIGHTS}; reinstall edgeprune or run "
            "examples/train_demo_model.py to train them"
        )
    info = demo_model_info()
    from edgeprune.models.yolov7 import yolov7, yolov7_tiny

    builders = {"yolov7_tiny": yolov7_tiny, "yolov7": yolov7}
    arch = info.get("arch", "yolov7_tiny")
    if arch not in builders:
        raise EdgepruneError(f"demo model info names an unknown architecture {arch!r}")
    names = list(info["names"])
    model = builders[arch](num_classes=len(names), names=names)
    state = torch.load(DEMO_WEIGHTS, map_location="cpu", weights_only=True)
    # stored in float16 to keep the package small; compute in float32
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state)
    model.img_size = int(info["img_size"])
    model.names = names
    return model.to(device).eval()
