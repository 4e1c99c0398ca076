"""The bootstrap interval of mAP over images: exactness of the re-accumulation and a known case."""

import math

import numpy as np
import pytest

from edgeprune.errors import InvalidConfigError
from edgeprune.evaluation import GroundTruth, coco_map
from edgeprune.evaluation.bootstrap import (
    map_interval,
    match_images,
    paired_difference,
    resample_weights,
    weighted_map,
)
from edgeprune.runtimes.postprocess import Detections


def _random_set(n=30, nc=3, seed=0, noise=6.0):
    """Images with 0-4 objects and noisy, partly wrong detections (so mAP is neither 0 nor 1)."""
    rng = np.random.default_rng(seed)
    gts, preds = [], []
    for _ in range(n):
        k = int(rng.integers(0, 5))
        xy = rng.uniform(0, 200, (k, 2))
        wh = rng.uniform(10, 60, (k, 2))
        boxes = np.concatenate([xy, xy + wh], 1)
        cls = rng.integers(0, nc, k)
        gts.append(GroundTruth(cls, boxes, (300, 300)))
        keep = rng.random(k) < 0.8
        det = boxes[keep] + rng.normal(0, noise, (int(keep.sum()), 4))
        dcls = np.where(rng.random(int(keep.sum())) < 0.85, cls[keep], rng.integers(0, nc, int(keep.sum())))
        fp = int(rng.integers(0, 3))
        fxy = rng.uniform(0, 200, (fp, 2))
        det = np.concatenate([det, np.concatenate([fxy, fxy + 30], 1)])
        dcls = np.concatenate([dcls, rng.integers(0, nc, fp)])
        preds.append(Detections(det.astype(np.float32), rng.random(len(det)).astype(np.float32),
                                dcls.astype(np.int64)))
    return gts, preds


def test_unit_weights_reproduce_pycocotools():
    gts, preds = _random_set()
    ref = coco_map(gts, preds, 3)
    got = weighted_map(match_images(gts, preds, 3), np.ones((1, len(gts))))
    assert 0.05 < ref["mAP50-95"] < 0.95
    assert got["mAP50-95"][0] == pytest.approx(ref["mAP50-95"], abs=1e-9)
    assert got["mAP50"][0] == pytest.approx(ref["mAP50"], abs=1e-9)


def test_counts_equal_pycocotools_on_the_resampled_list():
    gts, preds = _random_set(seed=1)
    m = match_images(gts, preds, 3)
    for w in resample_weights(len(gts), n_boot=5, seed=3):
        idx = np.repeat(np.arange(len(gts)), w.astype(int))
        ref = coco_map([gts[i] for i in idx], [preds[i] for i in idx], 3)
        got = weighted_map(m, w[None])
        # equal up to the order of equal-score detections (copies of one image are adjacent anyway)
        assert got["mAP50-95"][0] == pytest.approx(ref["mAP50-95"], abs=1e-9)
        assert got["mAP50"][0] == pytest.approx(ref["mAP50"], abs=1e-9)


def _binomial_quantile(n: int, p: float, q: float) -> int:
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if cdf >= q:
            return k
    return n


def test_interval_of_a_known_case():
    """n images with one object each; h of them detected exactly, the rest missed.

    Precision is 1 up to recall r = hits / n, then nothing: COCO's AP is (floor(100 r) + 1) / 101,
    and a bootstrap replicate's hits are Binomial(n, h / n). The percentile interval must therefore
    be that function at the binomial's 2.5 % and 97.5 % quantiles.
    """
    n, h = 200, 120
    box = np.array([[20.0, 20.0, 80.0, 90.0]])
    gts = [GroundTruth(np.array([0]), box, (128, 128)) for _ in range(n)]
    preds = [Detections(box.astype(np.float32), np.array([0.9], np.float32), np.array([0]))
             if i < h else Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                                      np.zeros(0, np.int64)) for i in range(n)]
    iv = map_interval(match_images(gts, preds, 1), n_boot=4000, confidence=0.95, seed=0)

    def ap(hits):
        return (math.floor(100 * hits / n + 1e-9) + 1) / 101

    assert iv.point == pytest.approx(ap(h))
    lo, hi = ap(_binomial_quantile(n, h / n, 0.025)), ap(_binomial_quantile(n, h / n, 0.975))
    step = 1 / 101  # one hit more or less moves AP by at most one recall threshold
    assert abs(iv.low - lo) <= step + 1e-9 and abs(iv.high - hi) <= step + 1e-9
    assert iv.low < iv.point < iv.high


def test_paired_difference_tells_apart_only_real_differences():
    gts, preds = _random_set(n=60, seed=2, noise=2.0)
    same = paired_difference(match_images(gts, preds, 3), match_images(gts, preds, 3), n_boot=200)
    assert same.point == 0 and same.low == 0 and same.high == 0
    # the second model misses every detection of class 0: measurably worse
    worse = [Detections(p.boxes[p.class_ids != 0], p.scores[p.class_ids != 0], p.class_ids[p.class_ids != 0])
             for p in preds]
    diff = paired_difference(match_images(gts, preds, 3), match_images(gts, worse, 3), n_boot=300)
    assert diff.low > 0
    assert not diff.contains(0.0)


def test_bad_input_is_refused():
    with pytest.raises(InvalidConfigError):
        resample_weights(0)
    gts, preds = _random_set(n=5)
    with pytest.raises(InvalidConfigError):
        match_images(gts, preds[:4], 3)
    with pytest.raises(InvalidConfigError):
        map_interval(match_images(gts, preds, 3), confidence=1.5)
