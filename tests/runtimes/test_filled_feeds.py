"""Timing inputs: dynamic dims filled (1, or the image size for an image input), dtype and seed kept."""

import numpy as np

from edgeprune.runtimes.base import TensorSpec
from edgeprune.runtimes.onnx_info import filled_feeds


def test_dynamic_dims_become_one_or_the_image_size():
    specs = [TensorSpec("images", ("batch", 3, "h", "w"), np.dtype(np.float32)),
             TensorSpec("scale", (2,), np.dtype(np.float16))]
    plain = filled_feeds(specs)
    assert plain["images"].shape == (1, 3, 1, 1) and plain["scale"].dtype == np.float16
    sized = filled_feeds(specs, img_size=(32, 48))
    assert sized["images"].shape == (1, 3, 32, 48) and sized["images"].dtype == np.float32
    assert 0.0 <= sized["images"].min() and sized["images"].max() < 1.0
    static = [TensorSpec("x", (2, 3, 8, 8), np.dtype(np.float32))]
    assert filled_feeds(static, img_size=(32, 32))["x"].shape == (2, 3, 8, 8)  # a static shape is kept
    np.testing.assert_array_equal(filled_feeds(static)["x"], filled_feeds(static)["x"])  # same seed: same
    assert not np.array_equal(filled_feeds(static)["x"], filled_feeds(static, seed=1)["x"])
