import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgeprune.data.synthetic import CLASSES, generate, generate_video
from edgeprune.data.yolo import parse_label_file
from edgeprune.errors import InvalidDataError


@pytest.fixture
def syn50(synthetic_data):
    return synthetic_data(50, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_by_seed(tmp_path):
    a = _files(generate(tmp_path / "a", 6, seed=11, progress=False))
    b = _files(generate(tmp_path / "b", 6, seed=11, progress=False))
    c = _files(generate(tmp_path / "c", 6, seed=12, progress=False))
    assert a.keys() == b.keys() and len(a) == 6 * 2 + 1
    assert all(a[k] == b[k] for k in a)
    assert any(a[k] != c[k] for k in a if k.startswith("images"))


def test_boxes_valid_and_all_classes_appear(syn50):
    counts = np.zeros(len(CLASSES), int)
    per_image = []
    for i in range(50):
        img = cv2.imread(str(syn50 / "images" / f"{i:06d}.jpg"))
        assert img.shape == (320, 320, 3)
        classes, boxes = parse_label_file(syn50 / "labels" / f"{i:06d}.txt", len(CLASSES))
        per_image.append(len(classes))
        np.add.at(counts, classes, 1)
        px = boxes * 320
        assert (boxes >= 0).all() and (boxes <= 1).all()
        assert ((px[:, 2] - px[:, 0]) >= 4).all() and ((px[:, 3] - px[:, 1]) >= 4).all()
    assert (counts > 0).all(), counts
    assert max(per_image) <= 4 and min(per_image) == 0


def test_data_yaml_names(syn50):
    cfg = yaml.safe_load((syn50 / "data.yaml").read_text())
    assert cfg["names"] == list(CLASSES) and cfg["nc"] == 5
    assert cfg["train"] == "images" and cfg["val"] == "images"


def test_boxes_enclose_drawn_defect():
    """Drawing on a flat background: every changed pixel of the defect lies inside its box."""
    from edgeprune.data import synthetic_draw as sd

    rng = np.random.default_rng(0)
    style = sd.Style("painted", 0, (60.0, 140.0, 200.0), (20.0, 20.0, 20.0), 1.0)
    for cls in range(len(CLASSES)):
        for _ in range(5):
            img = np.full((200, 200, 3), 128, np.float32)
            box = sd.draw_defect(rng, img, style, cls, 100.0, 100.0, 6.0)
            if box is None:
                continue
            diff = np.abs(img - 128).max(2)
            changed = diff > 0.3 * diff.max()  # the clearly visible part, not the soft fringe
            outside = changed.copy()
            x0, y0, x1, y1 = box
            outside[max(0, y0 - 2) : y1 + 2, max(0, x0 - 2) : x1 + 2] = False
            assert changed.any() and not outside.any(), CLASSES[cls]


def test_refuses_foreign_folder_and_reruns(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidDataError, match="not empty"):
        generate(tmp_path / "x", 2, seed=0, progress=False)
    out = generate(tmp_path / "y", 4, seed=0, progress=False)
    generate(out, 2, seed=0, progress=False)  # rerun over our own output replaces it
    assert len(list((out / "images").iterdir())) == 2


def test_cli_and_video(tmp_path):
    video = tmp_path / "v.avi"
    r = subprocess.run([sys.executable, "-m", "edgeprune", "synth-data", str(tmp_path / "d"), "--images", "3",
                        "--seed", "1", "--size", "160", "224", "--video", str(video), "--frames", "10"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(tmp_path / "d" / "images" / "000002.jpg"))
    assert img.shape == (160, 224, 3)
    cap = cv2.VideoCapture(str(video))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 10
    out = generate_video(tmp_path / "v.mp4", 5, seed=0, size=(128, 192))
    assert out.stat().st_size > 0
