"""Ultralytics-style data YAMLs: path/train/val/names, relative to the YAML, confined to the dataset root."""

from __future__ import annotations

import shutil

import pytest
import yaml

from edgeprune.data import YoloDataset
from edgeprune.data.synthetic import generate
from edgeprune.errors import InvalidConfigError, InvalidDataError
from edgeprune.iterative.config import build_evaluator, build_finetune, validate


@pytest.fixture
def ultra(tmp_path):
    """An Ultralytics layout: images/{train,val} + labels/{train,val} and a data.yaml with a names dict."""
    src = tmp_path / "synth"
    generate(src, 6, seed=0, img_size=(64, 64))
    root = tmp_path / "ds"
    for split, files in (("train", sorted((src / "images").iterdir())[:4]),
                         ("val", sorted((src / "images").iterdir())[4:])):
        for sub in ("images", "labels"):
            (root / sub / split).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / "images" / split / f.name)
            shutil.copy(src / "labels" / f"{f.stem}.txt", root / "labels" / split / f"{f.stem}.txt")
    names = {0: "scratch", 1: "dent", 2: "stain", 3: "crack", 4: "missing_hole"}
    (tmp_path / "cfg").mkdir()
    y = tmp_path / "cfg" / "data.yaml"
    y.write_text(yaml.safe_dump({"path": "../ds", "train": "images/train", "val": "images/val",
                                 "names": names}))
    return y


def test_splits_and_names_from_a_data_yaml(ultra):
    train = YoloDataset(ultra, 64, split="train")
    val = YoloDataset(ultra, 64, split="val")
    assert len(train) == 4 and len(val) == 2
    assert train.names == ["scratch", "dent", "stain", "crack", "missing_hole"]
    assert YoloDataset(ultra, 64).source.endswith(":val")  # evaluation picks val by default


def test_split_entries_outside_the_root_are_refused(ultra, tmp_path):
    cfg = yaml.safe_load(ultra.read_text())
    (tmp_path / "elsewhere" / "images").mkdir(parents=True)
    for bad in ("../elsewhere/images", str(tmp_path / "elsewhere" / "images")):
        ultra.write_text(yaml.safe_dump({**cfg, "train": bad}))
        with pytest.raises(InvalidDataError, match="outside the dataset root"):
            YoloDataset(ultra, 64, split="train")
    (tmp_path / "ds" / "link").symlink_to(tmp_path / "elsewhere" / "images")
    ultra.write_text(yaml.safe_dump({**cfg, "train": "link"}))
    with pytest.raises(InvalidDataError, match="outside the dataset root"):
        YoloDataset(ultra, 64, split="train")


def test_prune_config_takes_a_data_yaml(ultra, tmp_path):
    raw = {"model": {"builtin": "yolov7_tiny", "num_classes": 5},
           "data": {"yaml": str(ultra), "img_size": 64},
           "evaluator": {"kind": "detection"}, "finetune": {"kind": "labeled", "steps": 1},
           "targets": {"iterations": 1}, "run_dir": "run"}
    cfg = validate(raw, tmp_path)
    ev = build_evaluator(cfg, None, 64)
    assert len(ev.dataset) == 2 and ev.dataset.names[0] == "scratch"
    ft = build_finetune(cfg, None, 64)
    assert ft.data_dir == ultra
    from edgeprune.models import yolov7_tiny

    ft.cfg.update(batch_size=2, bn_recalibrate=0)
    ft(yolov7_tiny(5), 1)
    assert len(ft.last_trainer.dataset) == 4  # the train split
    with pytest.raises(InvalidConfigError, match="either 'yaml'"):
        validate({**raw, "data": {"yaml": str(ultra), "train": "x", "img_size": 64}}, tmp_path)
    with pytest.raises(InvalidConfigError, match="data.yaml"):
        validate({**raw, "data": {"yaml": "missing.yaml", "img_size": 64}}, tmp_path)
