import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from edgeprune.data import CocoDataset, ImageFolder, YoloDataset, collate, targets_to_xyxy
from edgeprune.data.synthetic import CLASSES
from edgeprune.data.yolo import label_path_for, parse_label_file
from edgeprune.errors import InvalidDataError
from edgeprune.runtimes.preprocess import boxes_from_letterbox


@pytest.fixture
def syn(synthetic_data):
    return synthetic_data(8, seed=5, img_size=(240, 320))  # non-square images so the letterbox pads


def test_items_and_collate(syn):
    ds = YoloDataset(syn, 256)
    assert ds.names == list(CLASSES) and len(ds) == 8
    img, t, info = ds[0]
    assert img.shape == (3, 256, 256) and img.dtype == torch.float32
    assert 0 <= float(img.min()) and float(img.max()) <= 1
    assert info.letterbox.pad_y > 0 and info.letterbox.orig_shape == (240, 320)
    images, targets, infos = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert images.shape == (4, 3, 256, 256) and len(infos) == 4
    n = [len(ds[i][1]) for i in range(4)]
    assert targets.shape == (sum(n), 6)
    assert targets[:, 0].tolist() == [float(i) for i in range(4) for _ in range(n[i])]


def test_targets_map_back_to_label_pixels(syn):
    ds = YoloDataset(syn / "data.yaml", 320)
    checked = 0
    for i in range(len(ds)):
        _, t, info = ds[i]
        back = boxes_from_letterbox(targets_to_xyxy(t, info.letterbox.new_shape), info.letterbox)
        classes, boxes = parse_label_file(label_path_for(info.path))
        h, w = info.letterbox.orig_shape
        np.testing.assert_allclose(back, boxes * [w, h, w, h], atol=1e-3)
        assert t[:, 1].long().tolist() == classes.tolist()
        checked += len(classes)
    assert checked > 0


def test_flip_augmentation_is_label_consistent(syn):
    plain = YoloDataset(syn, 256)
    aug = YoloDataset(syn, 256, augment=True, hsv=(0, 0, 0), fliplr=1.0, seed=0)
    for i in range(3):
        img, t, _ = plain[i]
        aimg, at, info = aug[i]
        assert info.flipped
        assert torch.equal(aimg, img.flip(-1))
        np.testing.assert_allclose(at[:, 2].numpy(), 1 - t[:, 2].numpy(), atol=1e-6)
        np.testing.assert_allclose(at[:, 3:].numpy(), t[:, 3:].numpy(), atol=1e-6)
    jitter = YoloDataset(syn, 256, augment=True, fliplr=0.0, seed=1)
    assert not torch.equal(jitter[0][0], plain[0][0]) and torch.equal(jitter[0][1], plain[0][1])


def test_cache_returns_same_items(syn):
    ds = YoloDataset(syn, 192, cache=True)
    a, b = ds[1], ds[1]
    assert torch.equal(a[0], b[0]) and 1 in ds._cache


def test_malformed_label_names_file_and_line(tmp_path, syn):
    root = tmp_path / "bad"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "images" / "a.jpg").write_bytes((syn / "images" / "000000.jpg").read_bytes())
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1 0.1\n1 0.5 oops 0.1 0.1\n")
    with pytest.raises(InvalidDataError, match=r"a\.txt:2"):
        YoloDataset(root, 128)
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.1\n")
    with pytest.raises(InvalidDataError, match=r"a\.txt:1.*5 values"):
        YoloDataset(root, 128)
    (root / "labels" / "a.txt").write_text("0 1.5 0.5 0.1 0.1\n")
    with pytest.raises(InvalidDataError, match="normalised"):
        YoloDataset(root, 128)
    (root / "labels" / "a.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InvalidDataError, match="class id 7"):
        YoloDataset(root, 128, names=list(CLASSES))
    (root / "labels" / "a.txt").unlink()  # missing label file: an image without objects
    assert len(YoloDataset(root, 128)[0][1]) == 0


def test_missing_images_dir_and_unreadable_image(tmp_path):
    with pytest.raises(InvalidDataError, match="images"):
        YoloDataset(tmp_path, 128)
    with pytest.raises(InvalidDataError, match="not found"):
        YoloDataset(tmp_path / "nope", 128)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(InvalidDataError, match="cannot read image"):
        YoloDataset(tmp_path, 128)[0]


def test_ultralytics_yaml_layout(tmp_path, syn):
    root = tmp_path / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    for i, split in enumerate(["train", "train", "val"]):
        name = f"{i:06d}"
        (root / "images" / split / f"{name}.jpg").write_bytes((syn / "images" / f"{name}.jpg").read_bytes())
        (root / "labels" / split / f"{name}.txt").write_text((syn / "labels" / f"{name}.txt").read_text())
    cfg = tmp_path / "coco8.yaml"
    cfg.write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: a\n  1: b\n  2: c\n"
                   "  3: d\n  4: e\n")
    assert len(YoloDataset(cfg, 128)) == 1  # evaluation default: val
    train = YoloDataset(cfg, 128, augment=True)
    assert len(train) == 2 and train.names == list("abcde")
    with pytest.raises(InvalidDataError, match="no 'test' split"):
        YoloDataset(cfg, 128, split="test")


def test_coco_json_matches_yolo(tmp_path, syn):
    yolo = YoloDataset(syn, 256)
    cat_ids = [10, 20, 30, 40, 50]
    images, anns = [], []
    for i, s in enumerate(yolo.samples):
        images.append({"id": 100 + i, "file_name": s.path.split("/")[-1], "width": 320, "height": 240})
        for c, (x0, y0, x1, y1) in zip(s.classes, s.boxes * [320, 240, 320, 240]):
            anns.append({"id": len(anns) + 1, "image_id": 100 + i, "category_id": cat_ids[c],
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
    cats = [{"id": cid, "name": n} for cid, n in zip(cat_ids[::-1], CLASSES[::-1])]  # order must not matter
    ann_path = tmp_path / "ann.json"
    ann_path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    coco = CocoDataset(syn / "images", ann_path, 256)
    assert coco.names == list(CLASSES) and coco.category_ids == cat_ids and len(coco) == len(yolo)
    for i in range(len(yolo)):
        a, b = yolo[i], coco[i]
        assert torch.equal(a[0], b[0])
        torch.testing.assert_close(a[1], b[1], atol=1e-5, rtol=0)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"images": images, "annotations": [{**anns[0], "category_id": 99}],
                               "categories": cats}))
    with pytest.raises(InvalidDataError, match="unknown category 99"):
        CocoDataset(syn / "images", bad, 256)


def test_image_folder(syn, tmp_path):
    f = ImageFolder(syn, 160, max_images=5)
    img, t, info = f[4]
    assert len(f) == 5 and img.shape == (3, 160, 160) and t.shape == (0, 6)
    assert info.path.endswith("000004.jpg")
    with pytest.raises(InvalidDataError, match="no images"):
        ImageFolder(tmp_path, 160)
