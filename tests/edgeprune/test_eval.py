import json

import numpy as np
import pytest
import torch
from torch import nn

from edgeprune.data import YoloDataset, targets_to_xyxy
from edgeprune.errors import InvalidDataError
from edgeprune.evaluation import (
    DetectionEvaluator,
    Evaluator,
    FidelityEvaluator,
    GroundTruth,
    coco_map,
    evaluate_predictions,
    summarize,
)
from edgeprune.runtimes.postprocess import Detections


class TinyDetector(nn.Module):
    """A stand-in following the model contract: eval -> [B, N, 5+nc] decoded, sigmoid-ed."""

    def __init__(self, nc: int = 5, stride: int = 16) -> None:
        super().__init__()
        self.num_classes, self.names, self.stride = nc, [f"c{i}" for i in range(nc)], stride
        self.conv = nn.Conv2d(3, 5 + nc, kernel_size=stride, stride=stride)
        with torch.no_grad():
            self.conv.bias[4] += 2.0  # confident enough that the teacher has pseudo-GT at conf 0.25

    def forward(self, x):
        p = self.conv(x)
        b, c, h, w = p.shape
        p = p.permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.training:
            return [p]
        gy, gx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        grid = torch.stack([gx, gy], -1).reshape(1, h * w, 2).float()
        xy = (p[..., :2].sigmoid() + grid) * self.stride
        wh = (p[..., 2:4].sigmoid() * 3 + 0.5) * self.stride
        return torch.cat([xy, wh, p[..., 4:].sigmoid()], -1)


def _gts():
    return [
        GroundTruth(np.array([0, 1]), np.array([[10, 10, 50, 60], [100, 80, 140, 150.0]]), (240, 320)),
        GroundTruth(np.zeros((0,), int), np.zeros((0, 4)), (240, 320)),  # an image without objects
        GroundTruth(np.array([2]), np.array([[5, 5, 25, 30.0]]), (240, 320)),
    ]


def _as_preds(gts, shift=0.0):
    return [Detections(g.boxes.astype(np.float32) + shift, np.ones(len(g.classes), np.float32),
                       g.classes.astype(np.int64)) for g in gts]


def test_map_of_ground_truth_is_one_and_empty_is_zero():
    gts = _gts()
    m = coco_map(gts, _as_preds(gts), num_classes=3)
    assert m["mAP50-95"] == pytest.approx(1.0) and m["mAP50"] == pytest.approx(1.0)
    empty = [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))] * 3
    assert coco_map(gts, empty, num_classes=3) == {"mAP50-95": 0.0, "mAP50": 0.0}
    wrong = [Detections(d.boxes, d.scores, (d.class_ids + 1) % 3) for d in _as_preds(gts)]
    assert coco_map(gts, wrong, num_classes=3)["mAP50-95"] == 0.0


def test_shifted_boxes_lower_map5095():
    gts = _gts()
    m = coco_map(gts, _as_preds(gts, shift=3.0), num_classes=3, per_class=True)
    assert 0.0 < m["mAP50-95"] < 0.95
    assert m["mAP50"] == pytest.approx(1.0)  # still overlapping by > 0.5
    assert set(m) >= {"AP50-95/0", "AP50-95/1", "AP50-95/2"}


@pytest.fixture
def syn(synthetic_data):
    return synthetic_data(10, seed=2, img_size=(240, 320))


def test_oracle_predictor_through_dataset_path(syn):
    """GT encoded as network output (letterboxed pixels) -> NMS -> un-letterbox -> mAP 1.0."""
    ds = YoloDataset(syn, 256)
    pos = {"i": 0}

    def oracle(batch):
        out = np.zeros((batch.shape[0], 8, 10), np.float32)
        for b in range(batch.shape[0]):
            _, t, info = ds[pos["i"]]
            pos["i"] += 1
            xyxy = targets_to_xyxy(t, info.letterbox.new_shape)
            for k, (box, cls) in enumerate(zip(xyxy, t[:, 1].long())):
                x0, y0, x1, y1 = box
                out[b, k, :4] = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0]
                out[b, k, 4] = 1.0
                out[b, k, 5 + int(cls)] = 1.0
        return out

    m = evaluate_predictions(ds, oracle, batch_size=4)
    assert m["mAP50-95"] > 0.99 and m["mAP50"] > 0.99
    assert pos["i"] == len(ds)


def test_detection_evaluator_runs_and_restores_mode(syn):
    model = TinyDetector()
    model.train()
    ev = DetectionEvaluator(syn / "data.yaml", 128, batch_size=4, max_images=6)
    assert isinstance(ev, Evaluator) and ev.primary == "mAP50-95"
    m = ev(model)
    assert set(m) == {"mAP50-95", "mAP50"} and 0.0 <= m["mAP50-95"] <= m["mAP50"] <= 1.0
    assert model.training  # mode restored
    s = ev.settings()
    assert json.loads(json.dumps(s)) == s and s["n_images"] == 6 and s["img_size"] == [128, 128]
    assert DetectionEvaluator(syn, 128, conf_thres=0.5).settings() != s


def test_fidelity_self_is_one_and_perturbed_student_lower(syn):
    torch.manual_seed(0)
    teacher = TinyDetector()
    fe = FidelityEvaluator(teacher, syn / "images", 128, max_images=6)
    assert fe.primary == "fidelity_mAP50-95"
    m = fe(teacher)
    assert m["fidelity_mAP50-95"] == pytest.approx(1.0, abs=1e-6)
    assert m["fidelity_mAP50"] == pytest.approx(1.0, abs=1e-6)
    student = TinyDetector()
    student.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        student.conv.weight.add_(torch.randn_like(student.conv.weight) * 0.05)
    worse = fe(student)
    assert worse["fidelity_mAP50-95"] < 0.99
    s = fe.settings()
    assert json.loads(json.dumps(s)) == s and len(s["teacher_sha256"]) == 64
    print(summarize({"teacher": m, "student": worse}))


def test_fidelity_without_teacher_detections_is_an_error(syn):
    teacher = TinyDetector()
    with torch.no_grad():
        teacher.conv.bias[4] = -20.0
    with pytest.raises(InvalidDataError, match="detects nothing"):
        FidelityEvaluator(teacher, syn, 128, max_images=2)(teacher)


def test_summarize_table():
    text = summarize({"a": {"mAP50-95": 0.5, "mAP50": 0.75}, "bb": {"mAP50": 0.25}})
    lines = text.splitlines()
    assert len(lines) == 3 and "mAP50-95" in lines[0] and lines[2].rstrip().endswith("0.2500")


def test_fidelity_yolov7_tiny_self_is_one(syn):
    models = pytest.importorskip("edgeprune.models")
    torch.manual_seed(0)
    model = models.yolov7_tiny(num_classes=5)
    # an untrained YOLOv7 head starts with very low objectness: take its top boxes as pseudo-GT
    fe = FidelityEvaluator(model, syn, 128, conf_thres=1e-6, max_images=3, max_det=30)
    assert fe.student_conf_thres == 1e-6
    m = fe(model)
    assert m["fidelity_mAP50-95"] == pytest.approx(1.0, abs=1e-6)


def test_channels_last_prediction_matches_and_restores_the_weights():
    from edgeprune.evaluation.detection import torch_predictor
    from edgeprune.models import yolov7_tiny

    torch.manual_seed(0)
    model = yolov7_tiny(num_classes=3).eval()
    batch = np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        plain = model(torch.from_numpy(batch)).numpy()
    before = {n: p.stride() for n, p in model.named_parameters()}
    with torch_predictor(model) as predict:
        conv_weights = [p for p in model.parameters() if p.ndim == 4]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
        got = predict(batch)
    assert {n: p.stride() for n, p in model.named_parameters()} == before  # the caller's format is back
    np.testing.assert_allclose(got, plain, rtol=1e-4, atol=1e-3)  # same math, other summation order
