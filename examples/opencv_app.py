"""An OpenCV application running an edgeprune bundle on a video or a camera.

    python examples/opencv_app.py --bundle demo_out/sweep/bundles/onnxruntime      # synthetic video
    python examples/opencv_app.py --bundle BUNDLE --video line3.mp4 --out annotated.mp4
    python examples/opencv_app.py --bundle BUNDLE --camera 0 --max-frames 300

Reads frames with cv2.VideoCapture, runs the bundle (letterbox, inference on the bundle's runtime,
NMS; boxes come back in frame pixels), draws boxes and labels, writes the annotated video and prints
pre / infer / post milliseconds and FPS. Works with any bundle `edgeprune sweep` / `edgeprune demo`
wrote, whatever its runtime. Needs no torch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgeprune.runtimes import load_bundle

PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72)]


def draw(frame: np.ndarray, det, names: list[str]) -> np.ndarray:
    """Draw boxes with 'class score' labels on a copy of ``frame``."""
    out = frame.copy()
    for (x1, y1, x2, y2), score, cls in zip(det.boxes.astype(int), det.scores, det.class_ids):
        color = PALETTE[int(cls) % len(PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        label = f"{names[int(cls)] if int(cls) < len(names) else cls} {score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + 4)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 2, ty), color, -1)
        cv2.putText(out, label, (x1 + 1, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
    return out


def open_source(args: argparse.Namespace) -> tuple[cv2.VideoCapture, str]:
    """The capture to read: a camera, a video file, or a generated synthetic inspection video."""
    if args.camera is not None:
        return cv2.VideoCapture(args.camera), f"camera {args.camera}"
    video = args.video
    if video is None:
        from edgeprune.data.synthetic import generate_video  # numpy + OpenCV only

        video = str(Path(tempfile.mkdtemp(prefix="edgeprune-video-")) / "inspection.avi")
        generate_video(video, n_frames=args.max_frames or 90, seed=args.seed, size=(320, 320))
        print(f"no --video given: generated a synthetic inspection video {video}")
    if not Path(video).is_file():
        sys.exit(f"error: video '{video}' does not exist")
    return cv2.VideoCapture(video), video


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True, help="bundle folder written by edgeprune sweep / demo")
    ap.add_argument("--video", help="input video file (default: generate a synthetic one)")
    ap.add_argument("--camera", type=int, help="camera index instead of a video")
    ap.add_argument("--out", default="annotated.avi", help="annotated output video (.avi or .mp4)")
    ap.add_argument("--runtime", help="run the bundle's ONNX on another runtime than the manifest's")
    ap.add_argument("--threads", type=int, help="inference threads (default: as measured)")
    ap.add_argument("--conf", type=float, help="score threshold (default: the manifest's)")
    ap.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = all)")
    ap.add_argument("--seed", type=int, default=3, help="seed of the generated video")
    args = ap.parse_args(argv)

    det = load_bundle(args.bundle, runtime=args.runtime, threads=args.threads, conf_thres=args.conf)
    try:  # a detector holds runtime sessions (GPU memory with TensorRT): close it on every way out
        return run(det, args)
    finally:
        det.close()


def run(det, args) -> int:
    """Detect on every frame, write the annotated video and print timings."""
    print(det)
    cap, source = open_source(args)
    if not cap.isOpened():
        sys.exit(f"error: cannot open {source}")
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 15.0
    writer = None
    frames = boxes = 0
    t_start = time.perf_counter()
    while True:
        ok, frame = cap.read()
        if not ok or (args.max_frames and frames >= args.max_frames):
            break
        d = det.detect(frame)
        annotated = draw(frame, d, det.names)
        if writer is None:
            fourcc = cv2.VideoWriter_fourcc(*("MJPG" if args.out.lower().endswith(".avi") else "mp4v"))
            writer = cv2.VideoWriter(args.out, fourcc, fps_in, (frame.shape[1], frame.shape[0]))
        writer.write(annotated)
        frames += 1
        boxes += len(d)
    wall = time.perf_counter() - t_start
    cap.release()
    if writer is not None:
        writer.release()
    if frames == 0:
        sys.exit(f"error: no frames could be read from {source}")
    t = det.timings
    print(f"{frames} frames from {source}, {boxes} detections, written to {args.out}")
    print(
        f"per frame: pre {t['avg_pre_ms']:.1f} ms | infer {t['avg_infer_ms']:.1f} ms | "
        f"post {t['avg_post_ms']:.1f} ms | detect total {t['avg_total_ms']:.1f} ms"
    )
    fps_detect = 1000.0 / t["avg_total_ms"]
    print(f"FPS: {fps_detect:.1f} (detect only), {frames / wall:.1f} (with decode, draw and write)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
