"""A bundle of the shipped demo model: detect() matches the PyTorch pipeline and finds drawn defects."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.models.demo import DEMO_WEIGHTS

pytestmark = pytest.mark.slow  # exports the demo model once (~5-10 s here)


def test_demo_weights_are_shipped():
    assert DEMO_WEIGHTS.is_file() and DEMO_WEIGHTS.stat().st_size > 1_000_000


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory):
    import torch

    from edgeprune.deploy.bundle import write_bundle
    from edgeprune.export import export_onnx
    from edgeprune.models import demo_model

    d = tmp_path_factory.mktemp("demo")
    model = demo_model()
    export_onnx(
        model, torch.zeros(1, 3, model.img_size, model.img_size), d / "m.onnx", metadata={"sparsity": 0.0}
    )
    bundle = write_bundle(
        d / "bundle",
        d / "m.onnx",
        runtime={"name": "onnxruntime", "threads": 1},
        postprocess={"conf_thres": 0.1},
    )
    return model, bundle


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def images(n=10, size=(320, 320), first_seed=100):
    from edgeprune.data.synthetic import generate_image

    return [generate_image(np.random.default_rng(first_seed + s), size) for s in range(n)]


def test_bundle_detect_matches_pytorch_pipeline(demo_bundle):
    import torch

    from edgeprune.runtimes import load_bundle
    from edgeprune.runtimes.postprocess import postprocess
    from edgeprune.runtimes.preprocess import boxes_from_letterbox, preprocess

    model, bundle = demo_bundle
    with load_bundle(bundle) as det:
        assert det.names == list(model.names) and det.input_size == (model.img_size, model.img_size)
        img = images(1, (240, 400), first_seed=5)[0][0]  # not square: letterbox pads top and bottom
        got = det.detect(img)
        x, lb = preprocess(img, model.img_size)
        with torch.no_grad():
            ref = postprocess(model(torch.from_numpy(x)).numpy(), conf_thres=0.1)
        assert len(got) == len(ref) > 0
        np.testing.assert_allclose(got.boxes, boxes_from_letterbox(ref.boxes, lb), atol=0.5)
        np.testing.assert_array_equal(got.class_ids, ref.class_ids)


def test_bundle_finds_drawn_defects(demo_bundle):
    from edgeprune.runtimes import load_bundle

    _, bundle = demo_bundle
    found = total = 0
    with load_bundle(bundle) as det:
        for img, defects in images():
            d = det.detect(img)
            for cls, box in defects:
                total += 1
                found += any(c == cls and iou(b, box) >= 0.5 for b, c in zip(d.boxes, d.class_ids))
    # the demo model is small and briefly trained (val mAP50 ~0.27): measured 7 of 25 at conf 0.1
    assert total >= 20 and found >= 5, (found, total)


def test_pick_evaluator_on_runtime_output_matches_pytorch(demo_bundle, tmp_path):
    from edgeprune.data.synthetic import generate
    from edgeprune.deploy.config import DatasetPickEvaluator
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.runtimes import load_bundle

    model, bundle = demo_bundle
    generate(tmp_path / "val", n_images=12, seed=7, img_size=(320, 320))
    ref = DetectionEvaluator(tmp_path / "val", model.img_size)(model)
    with load_bundle(bundle) as det:
        got = DatasetPickEvaluator(tmp_path / "val", model.img_size)(det)
    assert set(got) >= {"mAP50-95", "mAP50"}
    assert got["mAP50"] == pytest.approx(ref["mAP50"], abs=0.01)
    assert got["mAP50-95"] == pytest.approx(ref["mAP50-95"], abs=0.01)
