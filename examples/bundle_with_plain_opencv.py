"""Using an edgeprune bundle from plain OpenCV DNN code: no edgeprune import at all.

    python examples/bundle_with_plain_opencv.py BUNDLE_DIR image.jpg

Everything needed to run the model correctly is in the bundle's manifest.json: the input size, the
letterbox pad value, the colour order and scaling, the output layout, class names and thresholds.
This is what an integrator copies into an existing OpenCV app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np


def main(bundle: str, image_path: str) -> int:
    m = json.loads((Path(bundle) / "manifest.json").read_text())
    h, w = m["input"]["size"]
    pad = m["input"]["letterbox"]["pad_value"]
    conf, iou = m["postprocess"]["conf_thres"], m["postprocess"]["iou_thres"]
    net = cv2.dnn.readNetFromONNX(str(Path(bundle) / m["model"]))

    img = cv2.imread(image_path)
    if img is None:
        sys.exit(f"cannot read {image_path}")
    # letterbox: resize keeping aspect, pad to the network size, remember the transform
    r = min(h / img.shape[0], w / img.shape[1])
    nw, nh = round(img.shape[1] * r), round(img.shape[0] * r)
    px, py = (w - nw) // 2, (h - nh) // 2
    canvas = np.full((h, w, 3), pad, np.uint8)
    canvas[py : py + nh, px : px + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    blob = cv2.dnn.blobFromImage(canvas, scalefactor=1 / 255.0, swapRB=True)  # BGR -> RGB, NCHW

    net.setInput(blob)
    out = net.forward()[0]  # [N, 5 + classes]: cx, cy, w, h, objectness, class probabilities
    scores_all = out[:, 5:] * out[:, 4:5]
    cls = scores_all.argmax(1)
    scores = scores_all[np.arange(len(out)), cls]
    keep = scores > conf
    b = out[keep, :4]
    xywh = np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 2], b[:, 3]], 1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores[keep].tolist(), cls[keep].tolist(), conf, iou)
    for i in np.asarray(idx).reshape(-1):
        x, y, bw, bh = xywh[i]
        # undo the letterbox: back to original image pixels
        x1, y1 = (x - px) * img.shape[1] / nw, (y - py) * img.shape[0] / nh
        x2, y2 = (x + bw - px) * img.shape[1] / nw, (y + bh - py) * img.shape[0] / nh
        name = m["class_names"][cls[keep][i]]
        print(f"{name:<14} {scores[keep][i]:.2f}  [{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}]")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if sys.argv[1:2] in (["-h"], ["--help"]) else 2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
