"""The field check's model: Conv3x3(3->16, pad 1) + ReLU on a 1x3x64x64 input, as ONNX bytes (opset 13),
with weights given by a formula so the device computes the exact reference without the onnx package.

The bytes were made with onnx.helper from ``weights()`` and are stored zlib-compressed (the periodic
weights shrink 2,000 bytes to 209); tests/devices/test_field_check.py reads them back and checks they
agree with ``weights()`` and ``reference()``. Small enough to ship inside the agent zipapp (no
download, no file to copy).
"""

from __future__ import annotations

import base64
import zlib

import numpy as np

INPUT_SHAPE = (1, 3, 64, 64)
OUTPUT_SHAPE = (1, 16, 64, 64)
ONNX_ZLIB_B64 = (
    "eNrjYBcSTU1JTy0oKs1L1U3LTM1J0U3OSE3OtlrHz6XFxZaZm5ieWszFGM7F6CTEmKzE4pyfV6YlyMVSkJhS7MAIgQsY2bkEuRiT"
    "hdjyS0sKSkuUWIJSc0qFuMHGxYON07rAyyHAwQyCAoxOjOFeB3hnzZy57+wZHyA+s5cBCIC0LZBvBxS3G5UblRuVG5UblRuVG6xy"
    "Wp4cAqC6zMnLAZs2UsSiFGA1rZAYlwgHo5AAFxMHIxAzA7EDCCcBVUAqVzQVAjAVTixcDAK8AJLo8Yg="
)


def onnx_bytes() -> bytes:
    """The model as an ONNX file's bytes."""
    return zlib.decompress(base64.b64decode(ONNX_ZLIB_B64))


def weights() -> tuple[np.ndarray, np.ndarray]:
    """(W [16,3,3,3], B [16]) exactly as stored in the ONNX (multiples of 0.1 in [-0.3, 0.3])."""
    o, i, k = np.meshgrid(np.arange(16), np.arange(3), np.arange(9), indexing="ij")
    w = ((((o * 27 + i * 9 + k) % 7) - 3) / 10).astype(np.float32).reshape(16, 3, 3, 3)
    b = (((np.arange(16) % 5) - 2) / 10).astype(np.float32)
    return w, b


def example_input(seed: int = 0) -> np.ndarray:
    """A deterministic input in [0, 1] (smooth patterns, like an image after /255)."""
    n = np.prod(INPUT_SHAPE)
    x = 0.5 + 0.5 * np.sin(np.arange(n, dtype=np.float64) * (0.013 + 0.007 * seed) + seed)
    return x.astype(np.float32).reshape(INPUT_SHAPE)


def reference(x: np.ndarray) -> np.ndarray:
    """Conv3x3 pad 1 + ReLU in float64 numpy: what every engine's output is compared with."""
    w, b = weights()
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, wd = x.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for ky in range(3):
        for kx in range(3):
            patch = xp[:, :, ky:ky + h, kx:kx + wd]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, ky, kx].astype(np.float64))
    return np.maximum(out + b[None, :, None, None], 0.0)
