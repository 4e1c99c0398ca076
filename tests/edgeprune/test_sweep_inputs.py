"""``ep.sweep`` on a run folder: the export size comes from the run, a default accuracy floor applies."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from test_sweep import FAST, _tiny_run, make_cands

from edgeprune.deploy import sweep
from edgeprune.deploy.sweep import DEFAULT_ACCURACY_FLOOR_REL, run_img_size
from edgeprune.errors import InvalidConfigError

TARGETS = [{"name": "ort", "runtime": "onnxruntime", "threads": 1}]


def _factory(img_size=None):
    def build():
        from edgeprune.models import yolov7_tiny

        m = yolov7_tiny(num_classes=2, names=["a", "b"]).eval()
        if img_size is not None:
            m.img_size = img_size  # the model's own size, like the demo model's 256
        return m

    return build


def _input_hw(path: Path) -> list[int]:
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value for d in dims][2:]


def test_run_folder_is_exported_at_the_size_it_was_pruned_at(tmp_path):
    _tiny_run(tmp_path / "run", size=64)
    fingerprint = {"inputs": [{"shape": [1, 3, 64, 64], "dtype": "torch.float32"}]}
    (tmp_path / "run" / "run.json").write_text(json.dumps({"format": 1, "fingerprint": fingerprint}))
    assert run_img_size(tmp_path / "run") == (64, 64)
    res = sweep(tmp_path / "run", TARGETS, tmp_path / "out", model_factory=_factory(img_size=96),
                profile_config=FAST, bundles=False, report=False)
    assert _input_hw(tmp_path / "out/onnx/iter_01.onnx") == [64, 64]  # not the model's own 96
    assert res.targets["ort"].knee.candidate_id is not None


def test_unknown_input_size_is_a_clear_error(tmp_path):
    _tiny_run(tmp_path / "run", size=64)  # no run.json, a model without img_size
    with pytest.raises(InvalidConfigError, match="img_size=") as err:
        sweep(tmp_path / "run", TARGETS, tmp_path / "out", model_factory=_factory(), profile_config=FAST)
    assert "example_inputs" in str(err.value)


def test_default_accuracy_floor_excludes_a_large_loss(tmp_path):
    cands = make_cands(tmp_path)  # mAP 0.60, 0.55, 0.50: the last is below 0.9 x 0.60
    res = sweep(cands, TARGETS, tmp_path / "out", img_size=32, profile_config=FAST, bundles=False,
                report=False)
    knee = res.targets["ort"].knee
    assert DEFAULT_ACCURACY_FLOOR_REL == 0.9
    assert knee.eligible == [True, True, False] and "0.9 x unpruned" in knee.ineligible_reason[2]
    cands = make_cands(tmp_path)
    res = sweep(cands, TARGETS, tmp_path / "out2", img_size=32, profile_config=FAST, bundles=False,
                report=False, accuracy_floor_rel=0)
    assert res.targets["ort"].knee.eligible == [True, True, True]  # 0 turns the floor off
