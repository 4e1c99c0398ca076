"""Bootstrap confidence intervals of COCO mAP over images.

pycocotools matches detections to ground truth per image (``COCOeval.evaluate``); the matches do not
depend on which other images are in the set. A bootstrap replicate draws the images with
replacement, so it is fully described by how often each image is drawn (multinomial counts ``w``).
Re-accumulating a replicate is then COCO's ``accumulate`` with every detection and ground-truth
object of image ``i`` counted ``w[i]`` times: cumulative true/false positives become weighted
cumulative sums, the number of ground-truth objects a weighted sum. This equals pycocotools run on
the resampled image list (up to the order of detections with exactly equal scores), at the cost of
one ``evaluate`` and a few array operations per replicate.

Paired comparisons draw the same images for both models (same seed, same image count): the
interval of the difference tells whether two candidates can be told apart on this validation set.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgeprune.errors import InvalidConfigError
from edgeprune.evaluation.coco import GroundTruth, to_coco_detections, to_coco_gt
from edgeprune.runtimes.postprocess import Detections

DEFAULT_N_BOOT = 1000
DEFAULT_CONFIDENCE = 0.95
_REC_THRS = np.linspace(0.0, 1.00, 101)  # COCO's recall thresholds
_IOU_THRS = np.linspace(0.5, 0.95, 10)


@dataclass
class _ClassMatches:
    """One class's detections over all images, sorted by score as COCO accumulates them."""

    image: np.ndarray  # [D] image index of each detection
    tp: np.ndarray  # [T, D] bool: matched (not ignored) at each IoU threshold
    fp: np.ndarray  # [T, D] bool
    n_gt: np.ndarray  # [I] ground-truth objects of this class per image (not ignored)


@dataclass
class PerImageMatches:
    """COCO's per-image matching for a whole validation set (reusable for any image weighting)."""

    n_images: int
    classes: list[_ClassMatches]


@dataclass
class Interval:
    """A point estimate with its bootstrap percentile interval (``samples`` are the replicates)."""

    point: float
    low: float
    high: float
    confidence: float
    samples: np.ndarray

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies inside the interval (bounds included)."""
        return self.low <= value <= self.high

    def to_dict(self) -> dict:
        return {"point": self.point, "low": self.low, "high": self.high, "confidence": self.confidence,
                "n_boot": int(self.samples.size)}


def match_images(
    gts: Sequence[GroundTruth], preds: Sequence[Detections], num_classes: int, max_det: int = 300
) -> PerImageMatches:
    """Run pycocotools' per-image matching (area range "all", up to ``max_det`` detections per image)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(gts) != len(preds):
        raise InvalidConfigError(f"{len(gts)} ground-truth images but {len(preds)} prediction lists")
    n = len(gts)
    gt_dict = to_coco_gt(gts, num_classes)
    dets = to_coco_detections(preds)
    empty = _ClassMatches(np.zeros(0, np.int64), np.zeros((len(_IOU_THRS), 0), bool),
                          np.zeros((len(_IOU_THRS), 0), bool), np.zeros(n, np.int64))
    n_gt = np.zeros((num_classes, n), np.int64)
    for i, g in enumerate(gts):
        for c in np.asarray(g.classes, np.int64).reshape(-1):
            n_gt[c, i] += 1
    if not dets:
        return PerImageMatches(n, [_ClassMatches(empty.image, empty.tp, empty.fp, n_gt[c])
                                   for c in range(num_classes)])
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.params.maxDets = [int(max_det)]
        ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
        ev.evaluate()
    out = []
    for k in range(num_classes):
        entries = [(i, ev.evalImgs[k * n + i]) for i in range(n)]
        entries = [(i, e) for i, e in entries if e is not None]
        if not entries:
            out.append(_ClassMatches(empty.image, empty.tp, empty.fp, n_gt[k]))
            continue
        scores = np.concatenate([e["dtScores"][:max_det] for _, e in entries])
        image = np.concatenate([np.full(len(e["dtScores"][:max_det]), i, np.int64) for i, e in entries])
        dtm = np.concatenate([e["dtMatches"][:, :max_det] for _, e in entries], axis=1)
        dtig = np.concatenate([e["dtIgnore"][:, :max_det] for _, e in entries], axis=1).astype(bool)
        order = np.argsort(-scores, kind="mergesort")  # the order COCO accumulates in
        dtm, dtig, image = dtm[:, order] > 0, dtig[:, order], image[order]
        tp, fp = dtm & ~dtig, ~dtm & ~dtig
        hits = np.flatnonzero(tp.any(axis=0))
        # detections after the last true positive cannot change interpolated precision: drop them
        end = int(hits[-1]) + 1 if hits.size else 0
        gt_ig = [np.asarray(e["gtIgnore"], bool) for _, e in entries]
        counts = np.zeros(n, np.int64)
        for (i, _), ig in zip(entries, gt_ig):
            counts[i] = int((~ig).sum())
        out.append(_ClassMatches(image[:end], tp[:, :end], fp[:, :end], counts))
    return PerImageMatches(n, out)


def resample_weights(n_images: int, n_boot: int = DEFAULT_N_BOOT, seed: int = 0) -> np.ndarray:
    """``[n_boot, n_images]`` draw counts: each row is one resample of the images with replacement."""
    if n_images < 1 or n_boot < 1:
        raise InvalidConfigError(f"bootstrap needs images and replicates, got {n_images} and {n_boot}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=n_boot).astype(np.float64)


def _precision(tp_cum: np.ndarray, fp_cum: np.ndarray, n_gt: np.ndarray) -> np.ndarray:
    """COCO's interpolated precision ``[B, R]`` from weighted cumulative TP/FP ``[B, D]``; -1 if no GT."""
    b = tp_cum.shape[0]
    q = np.zeros((b, _REC_THRS.size))
    q[n_gt <= 0] = -1.0
    if tp_cum.shape[1] == 0:
        return q
    with np.errstate(divide="ignore", invalid="ignore"):
        rc = tp_cum / n_gt[:, None]
    pr = tp_cum / (tp_cum + fp_cum + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope from the right
    for r in np.flatnonzero(n_gt > 0):
        idx = np.searchsorted(rc[r], _REC_THRS, side="left")
        ok = idx < rc.shape[1]
        q[r, ok] = pr[r, idx[ok]]
    return q


def weighted_map(matches: PerImageMatches, weights: np.ndarray) -> dict[str, np.ndarray]:
    """mAP50-95 and mAP50 for each row of image ``weights`` ``[B, I]`` (ones = the plain COCO mAP)."""
    w = np.atleast_2d(np.asarray(weights, np.float64))
    if w.shape[1] != matches.n_images:
        raise InvalidConfigError(f"weights cover {w.shape[1]} images, the matches {matches.n_images}")
    b, t = w.shape[0], len(_IOU_THRS)
    total = np.zeros(b)
    valid = np.zeros(b)
    total50 = np.zeros(b)
    valid50 = np.zeros(b)
    for cm in matches.classes:
        n_gt = w @ cm.n_gt
        wd = w[:, cm.image]  # [B, D]
        for ti in range(t):
            q = _precision(np.cumsum(wd * cm.tp[ti], axis=1), np.cumsum(wd * cm.fp[ti], axis=1), n_gt)
            has = q[:, 0] > -1
            s = np.where(has, q.sum(axis=1), 0.0)
            total += s
            valid += has * _REC_THRS.size
            if ti == 0:  # IoU 0.5
                total50 += s
                valid50 += has * _REC_THRS.size
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"mAP50-95": np.where(valid > 0, total / np.maximum(valid, 1), 0.0),
                "mAP50": np.where(valid50 > 0, total50 / np.maximum(valid50, 1), 0.0)}


def _interval(point: float, samples: np.ndarray, confidence: float) -> Interval:
    if not 0 < confidence < 1:
        raise InvalidConfigError(f"confidence must be in (0, 1), got {confidence}")
    lo, hi = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return Interval(float(point), float(lo), float(hi), float(confidence), samples)


def _replicates(matches: PerImageMatches, metric: str, n_boot: int, seed: int) -> tuple[float, np.ndarray]:
    point = float(weighted_map(matches, np.ones((1, matches.n_images)))[metric][0])
    weights = resample_weights(matches.n_images, n_boot, seed)
    chunks = [weighted_map(matches, weights[i:i + 100])[metric] for i in range(0, n_boot, 100)]
    return point, np.concatenate(chunks)


def map_interval(
    matches: PerImageMatches, metric: str = "mAP50-95", n_boot: int = DEFAULT_N_BOOT,
    confidence: float = DEFAULT_CONFIDENCE, seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``metric`` over images."""
    point, samples = _replicates(matches, metric, n_boot, seed)
    return _interval(point, samples, confidence)


def paired_difference(
    a: PerImageMatches, b: PerImageMatches, metric: str = "mAP50-95", n_boot: int = DEFAULT_N_BOOT,
    confidence: float = DEFAULT_CONFIDENCE, seed: int = 0,
) -> Interval:
    """Interval of ``metric(a) - metric(b)`` with both scored on the same resampled images.

    When it contains 0 the two models cannot be told apart on this validation set.
    """
    if a.n_images != b.n_images:
        raise InvalidConfigError(f"paired comparison needs the same images ({a.n_images} vs {b.n_images})")
    pa, sa = _replicates(a, metric, n_boot, seed)
    pb, sb = _replicates(b, metric, n_boot, seed)
    return _interval(pa - pb, sa - sb, confidence)


def intervals_overlap(a: dict, b: dict) -> bool:
    """Whether two stored intervals (``{"low", "high"}``) overlap: a conservative 'cannot tell apart'."""
    return float(a["low"]) <= float(b["high"]) and float(b["low"]) <= float(a["high"])
