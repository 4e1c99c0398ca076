import numpy as np
import pytest

from edgeprune.errors import InvalidDataError
from edgeprune.runtimes.postprocess import postprocess
from edgeprune.runtimes.preprocess import (
    PAD_VALUE,
    boxes_from_letterbox,
    boxes_to_letterbox,
    letterbox,
    preprocess,
)


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (333, 517), (320, 320), (100, 900)])
def test_letterbox_round_trip_boxes(shape):
    img = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    out, lb = letterbox(img, 320)
    assert out.shape == (320, 320, 3)
    boxes = np.array([[10.5, 20.25, 60.0, 90.0], [0, 0, shape[1], shape[0]]])
    back = boxes_from_letterbox(boxes_to_letterbox(boxes, lb), lb)
    np.testing.assert_allclose(back, boxes, atol=1e-6)
    # the padding is the constant pad value, the image area is not
    if lb.pad_x > 0:
        assert (out[:, : lb.pad_x] == PAD_VALUE).all()
    if lb.pad_y > 0:
        assert (out[: lb.pad_y] == PAD_VALUE).all()


def test_preprocess_is_rgb_nchw_unit_range():
    img = np.zeros((64, 64, 3), np.uint8)
    img[..., 0] = 255  # blue in BGR
    x, _ = preprocess(img, 64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32
    assert x[0, 2].min() == 1.0 and x[0, 0].max() == 0.0  # blue went to channel 2 (RGB)


def test_letterbox_rejects_bad_image():
    with pytest.raises(InvalidDataError):
        letterbox(np.zeros((10, 10)), 32)


def test_postprocess_class_aware_nms():
    # two overlapping boxes of different classes both survive; a same-class duplicate does not
    pred = np.array(
        [
            [50, 50, 20, 20, 0.9, 0.9, 0.1],
            [51, 50, 20, 20, 0.8, 0.1, 0.9],
            [50, 51, 20, 20, 0.7, 0.9, 0.1],
            [200, 200, 10, 10, 0.1, 0.5, 0.5],  # below threshold
        ],
        np.float32,
    )
    det = postprocess(pred, conf_thres=0.25, iou_thres=0.5)
    assert len(det) == 2
    assert sorted(det.class_ids.tolist()) == [0, 1]
    np.testing.assert_allclose(det.boxes[0], [40, 40, 60, 60])
    assert det.scores[0] == pytest.approx(0.81)
