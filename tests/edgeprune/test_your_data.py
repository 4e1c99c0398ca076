"""The README's 'Your data' paths: COCO JSON beside YOLO folders, and clear errors for a wrong kind."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.data import CocoDataset, ImageFolder, YoloDataset
from edgeprune.data.synthetic import CLASSES, generate, generate_coco
from edgeprune.errors import EdgepruneError, InvalidConfigError


def test_generated_coco_matches_the_yolo_labels_of_the_same_seed(tmp_path):
    ann = generate_coco(tmp_path / "coco", tmp_path / "ann.json", 4, seed=3, img_size=(96, 96))
    coco = CocoDataset(tmp_path / "coco", ann, 96)
    yolo = YoloDataset(generate(tmp_path / "yolo", 4, seed=3, img_size=(96, 96), progress=False), 96)
    assert coco.names == list(CLASSES) and len(coco) == len(yolo) == 4
    for a, b in zip(coco.samples, yolo.samples):
        assert list(a.classes) == list(b.classes)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)


def test_a_json_path_where_a_folder_is_expected_says_what_to_use(tmp_path):
    ann = generate_coco(tmp_path / "imgs", tmp_path / "instances.json", 1, img_size=(64, 64))
    with pytest.raises(EdgepruneError, match=r"CocoDataset\(images_dir"):
        YoloDataset(ann, 64)
    with pytest.raises(EdgepruneError, match="folder of the images"):
        ImageFolder(ann, 64)


def test_labeled_finetune_takes_a_dataset_with_a_stable_identity(tmp_path):
    from edgeprune.training import LabeledFinetune

    ann = generate_coco(tmp_path / "imgs", tmp_path / "instances.json", 2, img_size=(64, 64))
    a = LabeledFinetune(CocoDataset(tmp_path / "imgs", ann, 64), 64).settings()
    b = LabeledFinetune(CocoDataset(tmp_path / "imgs", ann, 64), 64).settings()
    assert a == b and a["data_dir"].startswith("CocoDataset:")  # a resumed run sees the same fingerprint
    with pytest.raises(InvalidConfigError, match="img_size"):
        LabeledFinetune(CocoDataset(tmp_path / "imgs", ann, 64), 96)
