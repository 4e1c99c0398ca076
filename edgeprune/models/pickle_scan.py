"""Read which Python globals a torch checkpoint's pickle names, without unpickling anything.

``torch.save`` writes a zip archive whose ``<name>/data.pkl`` is the pickle. Walking its opcodes with
``pickletools.genops`` lists every ``module.name`` the pickle would import, which tells an official
YOLOv7 checkpoint (``models.yolo.Model``) from an Ultralytics one (``ultralytics.nn.tasks...``) or
from a plain state dict before any loader runs. (``torch.serialization.
get_unsafe_globals_in_checkpoint`` is not used: it hides every global some earlier load added to the
process-wide allow-list, e.g. Ultralytics' classes once Ultralytics has loaded one checkpoint.)
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from pathlib import Path

from edgeprune.errors import InvalidModelError

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}


def data_pickle(path: str | os.PathLike) -> bytes:
    """The bytes of ``data.pkl`` inside a zip-format torch checkpoint; ``InvalidModelError`` otherwise."""
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
        names = [n for n in zf.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(names) != 1:
            raise InvalidModelError(f"{p} is a zip archive but not a torch checkpoint (no single data.pkl)")
        return zf.read(names[0])


def pickle_globals(data: bytes) -> set[str]:
    """Every ``module.name`` global the pickle refers to (GLOBAL and STACK_GLOBAL opcodes)."""
    found: set[str] = set()
    strings: list[str] = []
    memo: dict[int, str] = {}
    n_memo = 0  # MEMOIZE numbers memo slots implicitly
    last: str | None = None  # the string just pushed, if the previous opcode pushed one
    try:
        for op, arg, _pos in pickletools.genops(io.BytesIO(data)):
            name, pushed = op.name, None
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
                found.add(f"{module}.{attr}")
            elif name in _STRING_OPS:
                pushed = arg if isinstance(arg, str) else arg.decode("latin-1")
            elif name == "MEMOIZE":
                if last is not None:
                    memo[n_memo] = last
                n_memo += 1
                pushed = last
            elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                if last is not None:
                    memo[int(arg)] = last
                pushed = last
            elif name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                pushed = memo[int(arg)]
            elif name == "STACK_GLOBAL" and len(strings) >= 2:
                found.add(f"{strings[-2]}.{strings[-1]}")
            if pushed is not None and name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                strings.append(pushed)
            last = pushed
    except Exception as e:  # pickletools raises ValueError and others on a damaged stream
        raise InvalidModelError(f"the checkpoint's pickle is damaged: {type(e).__name__}: {e}") from e
    return found
