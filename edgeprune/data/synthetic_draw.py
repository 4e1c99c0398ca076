"""Drawing for the synthetic inspection data: textures, defects, distractors, lighting (OpenCV).

Every defect is drawn through an alpha map of its own, and its box is the bounding rectangle of that
map where the defect is visible, so boxes enclose exactly what was drawn. All randomness comes from
the ``numpy.random.Generator`` passed in (deterministic by seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CLASSES = ("scratch", "dent", "stain", "crack", "missing_hole")
TEXTURES = ("metal", "fabric", "pcb", "painted")
_VISIBLE = 0.3  # alpha above which a defect pixel counts as part of the defect (its box)
_MIN_BOX = 4  # pixels; thinner boxes are redrawn (degenerate boxes train and score badly)


@dataclass
class Style:
    """Per-image look shared by the background, distractors and defects."""

    texture: str
    direction: int  # 0: brushing/weave along x, 1: along y
    pad_color: tuple[float, float, float]
    hole_color: tuple[float, float, float]
    scale: float  # defect size factor relative to a 320-pixel image


def _noise(rng: np.random.Generator, h: int, w: int, ksize: tuple[int, int]) -> np.ndarray:
    """Zero-mean unit-ish noise smoothed by a box filter of ``ksize`` (w, h)."""
    n = cv2.blur(rng.standard_normal((h, w)).astype(np.float32), ksize)
    return n / (n.std() + 1e-6)


def texture(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, Style]:
    """A random background (float32 BGR 0..255) and the style it fixes for the rest of the image."""
    kind = TEXTURES[int(rng.integers(len(TEXTURES)))]
    direction = int(rng.integers(2))
    base = np.ones((h, w, 3), np.float32)
    low = _noise(rng, h, w, (max(3, w // 6), max(3, h // 6)))[..., None]
    if kind == "metal":
        gray = rng.uniform(90, 190)
        img = base * (gray + rng.uniform(-8, 8, 3)).astype(np.float32)
        k = (int(rng.integers(15, 61)), 1) if direction == 0 else (1, int(rng.integers(15, 61)))
        img += _noise(rng, h, w, k)[..., None] * rng.uniform(4, 12) + low * rng.uniform(2, 8)
    elif kind == "fabric":
        color = rng.uniform(40, 200, 3).astype(np.float32)
        period = rng.uniform(3.0, 7.0)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(-0.3, 0.3)
        u, v = xx * np.cos(ang) + yy * np.sin(ang), -xx * np.sin(ang) + yy * np.cos(ang)
        weave = np.sin(2 * np.pi * u / period) * np.sign(np.sin(2 * np.pi * v / (2 * period)))
        img = base * color + (weave[..., None] * rng.uniform(6, 16)).astype(np.float32)
        img += _noise(rng, h, w, (3, 3))[..., None] * rng.uniform(3, 8) + low * rng.uniform(3, 10)
    elif kind == "pcb":
        mask_color = [(50, 110, 40), (90, 60, 30), (30, 30, 30), (40, 40, 120)][int(rng.integers(4))]
        img = base * (np.array(mask_color, np.float32) + rng.uniform(-15, 15, 3).astype(np.float32))
        img += low * rng.uniform(2, 6)
        copper = tuple(float(c) for c in rng.uniform([40, 120, 170], [90, 170, 220]))
        for _ in range(int(rng.integers(4, 12))):  # traces: 45/90 degree polylines
            pts = [rng.uniform([0, 0], [w, h])]
            for _ in range(int(rng.integers(2, 5))):
                ang = rng.integers(8) * np.pi / 4
                pts.append(pts[-1] + rng.uniform(20, 120) * np.array([np.cos(ang), np.sin(ang)]))
            cv2.polylines(img, [np.round(pts).astype(np.int32)], False, copper, int(rng.integers(2, 6)),
                          cv2.LINE_AA)
        img += _noise(rng, h, w, (2, 2))[..., None] * 3
    else:  # painted: smooth colour with orange-peel speckle
        img = base * rng.uniform(50, 220, 3).astype(np.float32)
        img += _noise(rng, h, w, (5, 5))[..., None] * rng.uniform(2, 6) + low * rng.uniform(3, 10)
    pad = tuple(float(c) for c in (rng.uniform([40, 120, 170], [90, 170, 220]) if rng.random() < 0.6
                                   else rng.uniform(150, 220) * np.ones(3)))
    hole = tuple(float(c) for c in rng.uniform(10, 45) * np.ones(3))
    return img, Style(kind, direction, pad, hole, min(h, w) / 320.0)


def _blend(img: np.ndarray, alpha: np.ndarray, color: np.ndarray | tuple) -> None:
    """img = img * (1 - alpha) + color * alpha, in place, only where alpha > 0 (speed)."""
    x, y, w, h = cv2.boundingRect((alpha > 0).astype(np.uint8))
    if w == 0 or h == 0:
        return
    a = alpha[y : y + h, x : x + w, None]
    roi = img[y : y + h, x : x + w]
    roi *= 1 - a
    roi += a * np.asarray(color, np.float32)


def _box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight xyxy box (exclusive max) of the visible part of ``alpha``, or None if degenerate."""
    ys, xs = np.nonzero(alpha > _VISIBLE)
    if xs.size == 0:
        return None
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    if box[2] - box[0] < _MIN_BOX or box[3] - box[1] < _MIN_BOX:
        return None
    return box


def _local_mean(img: np.ndarray, cx: float, cy: float, r: int = 12) -> np.ndarray:
    """Mean BGR colour around (cx, cy): defects are drawn relative to their surroundings."""
    h, w = img.shape[:2]
    x0, y0 = int(np.clip(cx - r, 0, w - 1)), int(np.clip(cy - r, 0, h - 1))
    x1, y1 = max(x0 + 1, int(np.clip(cx + r + 1, 1, w))), max(y0 + 1, int(np.clip(cy + r + 1, 1, h)))
    return img[y0:y1, x0:x1].reshape(-1, 3).mean(0)


def _scratch(rng, img, st, cx, cy):
    h, w = img.shape[:2]
    length = rng.uniform(15, 130) * st.scale
    ang = rng.uniform(0, np.pi)
    d = np.array([np.cos(ang), np.sin(ang)])
    p0, p2 = np.array([cx, cy]) - d * length / 2, np.array([cx, cy]) + d * length / 2
    p1 = (p0 + p2) / 2 + np.array([-d[1], d[0]]) * rng.uniform(-0.25, 0.25) * length
    t = np.linspace(0, 1, 24)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2
    mask = np.zeros((h, w), np.uint8)
    cv2.polylines(mask, [np.round(pts * 4).astype(np.int32)], False, 255, 1 if length < 60 else 2,
                  cv2.LINE_AA, shift=2)
    alpha = mask.astype(np.float32) / 255 * rng.uniform(0.5, 0.95)
    local = _local_mean(img, cx, cy)
    sign = 1 if rng.random() < 0.7 else -1  # mostly bright (bare metal), sometimes dark
    return alpha, np.clip(local + sign * rng.uniform(35, 90), 0, 255)


def _crack(rng, img, st, cx, cy):
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    ang0 = rng.uniform(0, 2 * np.pi)
    paths = []
    p, ang = np.array([cx, cy], np.float64), ang0
    main = [p.copy()]
    for _ in range(int(rng.integers(6, 22) * max(st.scale, 0.5))):
        ang = ang0 + rng.uniform(-0.9, 0.9)  # jagged, but keeps a general direction
        p = p + rng.uniform(3, 8) * st.scale * np.array([np.cos(ang), np.sin(ang)])
        main.append(p.copy())
    paths.append(main)
    for _ in range(int(rng.integers(0, 3))):  # branches
        q = main[int(rng.integers(1, len(main)))].copy()
        bang = ang0 + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
        branch = [q.copy()]
        for _ in range(int(rng.integers(2, 7))):
            q = q + rng.uniform(3, 7) * st.scale * np.array([np.cos(bang + rng.uniform(-0.7, 0.7)),
                                                             np.sin(bang + rng.uniform(-0.7, 0.7))])
            branch.append(q.copy())
        paths.append(branch)
    for i, path in enumerate(paths):
        cv2.polylines(mask, [np.round(np.array(path) * 4).astype(np.int32)], False, 255,
                      2 if (i == 0 and rng.random() < 0.5) else 1, cv2.LINE_AA, shift=2)
    alpha = mask.astype(np.float32) / 255 * rng.uniform(0.6, 1.0)
    return alpha, np.clip(_local_mean(img, cx, cy) * rng.uniform(0.1, 0.35), 0, 255)


def _stain(rng, img, st, cx, cy):
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.float32)
    r = rng.uniform(5, 32) * st.scale
    for _ in range(int(rng.integers(3, 9))):
        c = (cx + rng.normal(0, r * 0.5), cy + rng.normal(0, r * 0.5))
        axes = (max(2.0, r * rng.uniform(0.3, 0.8)), max(2.0, r * rng.uniform(0.3, 0.8)))
        cv2.ellipse(mask, ((c[0], c[1]), (2 * axes[0], 2 * axes[1]), rng.uniform(0, 180)), 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, r * 0.15))
    mask = np.clip(mask * 1.4, 0, 1)  # soft rim, opaque core
    palette = [(30, 60, 110), (20, 110, 150), (40, 40, 40), (60, 90, 90), (120, 160, 170)]
    color = np.array(palette[int(rng.integers(len(palette)))], np.float32) + rng.uniform(-15, 15, 3)
    opacity = rng.uniform(0.35, 0.8)
    return mask * opacity, np.clip(color, 0, 255), opacity


def _dent(rng, img, st, cx, cy):
    """A shallow depression: an ellipse shaded bright on one side, dark on the other."""
    h, w = img.shape[:2]
    a, b = rng.uniform(6, 30, 2) * st.scale
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / a
    v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / b
    r2 = u * u + v * v
    inside = (r2 <= 1).astype(np.float32)
    light = rng.uniform(0, 2 * np.pi)
    lx, ly = np.cos(light), np.sin(light)
    # surface normal of a bowl: points toward the centre, so the far rim faces the light
    shade = -(u * lx + v * ly) * np.sqrt(np.clip(1 - r2, 0, 1) + 0.2)
    shade = cv2.GaussianBlur(shade * inside, (0, 0), 1.0) * rng.uniform(0.2, 0.5)
    return inside, shade


def _disc(h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """Anti-aliased filled circle as a float alpha map."""
    mask = np.zeros((h, w), np.uint8)
    centre = (int(round(cx * 4)), int(round(cy * 4)))  # 2 fractional bits: sub-pixel placement
    cv2.circle(mask, centre, int(round(r * 4)), 255, -1, cv2.LINE_AA, shift=2)
    return mask.astype(np.float32) / 255


def _pad(img: np.ndarray, st: Style, cx: float, cy: float, r: float, hole: bool) -> None:
    """A round metal pad, with its drilled hole if ``hole`` (a normal part, or the missing_hole defect)."""
    h, w = img.shape[:2]
    _blend(img, _disc(h, w, cx, cy, r), st.pad_color)
    if hole:
        _blend(img, _disc(h, w, cx, cy, r * 0.5), st.hole_color)


def draw_defect(rng: np.random.Generator, img: np.ndarray, st: Style, cls: int, cx: float, cy: float,
                pad_radius: float) -> tuple[int, int, int, int] | None:
    """Draw defect ``cls`` centred near (cx, cy) into ``img`` in place; returns its xyxy box or None."""
    name = CLASSES[cls]
    if name in ("scratch", "crack"):
        alpha, color = (_scratch if name == "scratch" else _crack)(rng, img, st, cx, cy)
        box = _box(alpha / max(float(alpha.max()), 1e-6))
        if box is not None:
            _blend(img, alpha, color)
        return box
    if name == "stain":
        alpha, color, opacity = _stain(rng, img, st, cx, cy)
        box = _box(alpha / opacity)
        if box is not None:
            _blend(img, alpha, color)
        return box
    if name == "dent":
        inside, shade = _dent(rng, img, st, cx, cy)
        box = _box(inside)
        if box is not None:
            # additive, scaled by the local brightness but at least 80: dents stay visible on dark parts
            img += shade[..., None] * max(float(_local_mean(img, cx, cy).mean()), 80.0)
        return box
    # missing_hole: a pad like the image's other pads, but never drilled
    box = _box(_disc(img.shape[0], img.shape[1], cx, cy, pad_radius))
    if box is not None:
        _pad(img, st, cx, cy, pad_radius, hole=False)
    return box


def draw_distractors(rng: np.random.Generator, img: np.ndarray, st: Style, pad_radius: float) -> None:
    """Marks that are NOT defects: drilled pads, faint texture streaks, specks, printed text, shadows."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(0, 6) if st.texture == "pcb" else rng.integers(0, 3))):
        _pad(img, st, rng.uniform(10, w - 10), rng.uniform(10, h - 10), pad_radius, hole=True)
    for _ in range(int(rng.integers(0, 5))):  # short faint streaks along the grain
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        length = rng.uniform(10, 50) * st.scale
        dx, dy = (length, rng.uniform(-1, 1)) if st.direction == 0 else (rng.uniform(-1, 1), length)
        shade = _local_mean(img, x, y) + rng.choice([-1, 1]) * rng.uniform(10, 22)
        cv2.line(img, (int(x), int(y)), (int(x + dx), int(y + dy)), tuple(float(c) for c in shade), 1,
                 cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 8))):  # specks
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        cv2.circle(img, (int(x), int(y)), int(rng.integers(1, 3)),
                   tuple(float(c) for c in _local_mean(img, x, y) * rng.uniform(0.4, 0.8)), -1, cv2.LINE_AA)
    if rng.random() < 0.35:  # printed marking
        text = "".join(rng.choice(list("ABCDEFGHJKLMNPRSTUVWXYZ0123456789-"), int(rng.integers(3, 8))))
        color = (235.0, 235.0, 235.0) if rng.random() < 0.7 else (20.0, 20.0, 20.0)
        mask = np.zeros((h, w), np.uint8)  # OpenCV 5 draws text on 8-bit images only
        cv2.putText(mask, text, (int(rng.uniform(0, w * 0.7)), int(rng.uniform(15, h - 5))),
                    cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.3, 0.6) * st.scale, 255, 1, cv2.LINE_AA)
        _blend(img, mask.astype(np.float32) / 255, color)
    if rng.random() < 0.3:  # a large soft shadow
        shadow = np.zeros((h, w), np.float32)
        centre = (rng.uniform(0, w), rng.uniform(0, h))
        axes = (rng.uniform(0.3, 0.8) * w, rng.uniform(0.3, 0.8) * h)
        cv2.ellipse(shadow, (centre, axes, rng.uniform(0, 180)), 1.0, -1)
        shadow = cv2.GaussianBlur(shadow, (0, 0), 0.08 * min(h, w))
        img *= 1 - shadow[..., None] * rng.uniform(0.1, 0.3)


def lighting(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Gradient, vignetting, gain/bias, optional blur and sensor noise -> uint8 BGR image."""
    h, w = img.shape[:2]
    yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    phi = rng.uniform(0, 2 * np.pi)
    ramp = (xx * np.cos(phi) + yy * np.sin(phi)) / np.hypot(h, w)
    ramp -= ramp.mean()
    gain = 1 + rng.uniform(0, 0.9) * ramp
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    gain *= 1 - rng.uniform(0, 0.35) * r2 / 2
    img = img * (gain * rng.uniform(0.7, 1.2))[..., None] + rng.uniform(-25, 25)
    if rng.random() < 0.35:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.3))
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(1.5, 7)
    return np.clip(img, 0, 255).astype(np.uint8)
