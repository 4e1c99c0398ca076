"""One description of a detector's input and output, shared by export, bundles and ``detect()``. No torch.

``ModelIO`` holds the input size, letterbox pad value, pixel scale, colour order, output layout and
class names. The exporter stores ``to_dict()`` in the ONNX metadata, the bundle writer turns it into
the manifest's ``input``/``output``/``class_names`` sections (``to_manifest``), and the bundle reader
rebuilds it (``from_manifest``): each fact is written by this module only.

Output layouts (rows of the ``[1, N, K]`` output, boxes in network-input pixels):
- ``cxcywh_obj_cls``: ``cx, cy, w, h, objectness, class probabilities`` (YOLOv7, K = 5 + C);
- ``cxcywh_cls``: ``cx, cy, w, h, class probabilities`` (anchor-free Ultralytics heads, K = 4 + C).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edgeprune.errors import InvalidConfigError

LAYOUTS = ("cxcywh_obj_cls", "cxcywh_cls")
COLORS = ("RGB", "BGR")


@dataclass(frozen=True)
class ModelIO:
    """Input size ``(h, w)``, preprocessing, output layout and class names of an exported detector."""

    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    output_layout: str = "cxcywh_obj_cls"
    input_name: str = "images"
    output_name: str = "output"
    layout: str = "NCHW"
    color: str = "RGB"
    pad_value: int = 114
    scale: float = 1 / 255

    def __post_init__(self) -> None:
        size = self.input_size
        if (not isinstance(size, (tuple, list)) or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
            raise InvalidConfigError(f"model io: input_size must be two positive ints (h, w), got {size!r}")
        object.__setattr__(self, "input_size", (int(size[0]), int(size[1])))
        names = self.class_names
        if (not isinstance(names, (tuple, list)) or not names
                or not all(isinstance(n, str) for n in names)):
            raise InvalidConfigError(
                f"model io: class_names must be a non-empty list of strings, got {names!r}")
        object.__setattr__(self, "class_names", tuple(names))
        if self.output_layout not in LAYOUTS:
            raise InvalidConfigError(
                f"model io: output_layout {self.output_layout!r} is not one of {list(LAYOUTS)}")
        if self.layout != "NCHW":
            raise InvalidConfigError(f"model io: only NCHW inputs are supported, got {self.layout!r}")
        if self.color not in COLORS:
            raise InvalidConfigError(f"model io: color must be one of {list(COLORS)}, got {self.color!r}")
        pad, scale = self.pad_value, self.scale
        if not isinstance(pad, int) or isinstance(pad, bool) or not 0 <= pad <= 255:
            raise InvalidConfigError(f"model io: letterbox pad_value must be an int 0-255, got {pad!r}")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0:
            raise InvalidConfigError(f"model io: normalization scale must be positive, got {scale!r}")
        for name in ("input_name", "output_name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise InvalidConfigError(f"model io: {name} must be a non-empty string")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def row_width(self) -> int:
        """Numbers per output row: 4 box values, objectness for ``cxcywh_obj_cls``, then one per class."""
        return 4 + (self.output_layout == "cxcywh_obj_cls") + self.num_classes

    def to_dict(self) -> dict[str, Any]:
        """The JSON form stored in ONNX metadata (``metadata_props["edgeprune"]``)."""
        return {
            "input_name": self.input_name,
            "output_name": self.output_name,
            "input_size": list(self.input_size),
            "layout": self.layout,
            "color": self.color,
            "letterbox": {"pad_value": self.pad_value},
            "normalization": {"scale": self.scale},
            "class_names": list(self.class_names),
            "output_layout": self.output_layout,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ModelIO:
        """Read ``to_dict()``'s form (other keys are ignored); ``InvalidConfigError`` if malformed."""
        if not isinstance(d, dict):
            raise InvalidConfigError(f"model io must be a JSON object, got {type(d).__name__}")
        try:
            size = d["input_size"]
            names = d["class_names"]
        except KeyError as e:
            raise InvalidConfigError(f"model io lacks the field {e.args[0]!r}") from None
        return cls(
            input_size=tuple(size) if isinstance(size, list) else size,
            class_names=tuple(names) if isinstance(names, list) else names,
            output_layout=d.get("output_layout", "cxcywh_obj_cls"),
            input_name=d.get("input_name", "images"),
            output_name=d.get("output_name", "output"),
            layout=d.get("layout", "NCHW"),
            color=d.get("color", "RGB"),
            pad_value=(d.get("letterbox") or {}).get("pad_value", 114),
            scale=(d.get("normalization") or {}).get("scale", 1 / 255),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelIO:
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as e:
            raise InvalidConfigError(f"model io is not valid JSON: {e}") from None

    def to_manifest(self) -> dict[str, Any]:
        """The bundle manifest's ``input``, ``output`` and ``class_names`` sections."""
        return {
            "input": {
                "name": self.input_name,
                "size": list(self.input_size),
                "layout": self.layout,
                "dtype": "float32",
                "color": self.color,
                "letterbox": {"pad_value": self.pad_value},
                "normalization": {"scale": self.scale},
            },
            "output": {"name": self.output_name, "layout": self.output_layout, "box_units": "input pixels"},
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_manifest(cls, m: dict[str, Any]) -> ModelIO:
        """Rebuild from a bundle manifest (``to_manifest``'s sections)."""
        inp, out = m.get("input") or {}, m.get("output") or {}
        if not isinstance(inp, dict) or not isinstance(out, dict):
            raise InvalidConfigError("manifest 'input' and 'output' must be objects")
        size: list[int] = inp.get("size") or []
        return cls.from_dict({
            "input_name": inp.get("name", "images"), "output_name": out.get("name", "output"),
            "input_size": size, "layout": inp.get("layout", "NCHW"), "color": inp.get("color", "RGB"),
            "letterbox": inp.get("letterbox"), "normalization": inp.get("normalization"),
            "class_names": m.get("class_names"), "output_layout": out.get("layout", "cxcywh_obj_cls"),
        })
