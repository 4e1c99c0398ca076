"""ep.models.load on official-format YOLOv7 checkpoints (built here without the official code)."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import yolov7_format as official

import edgeprune as ep
from edgeprune.errors import InvalidModelError

X = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))


def _reference(ckpt: dict) -> torch.Tensor:
    """The official forward of the weights the loader should use (EMA if present), in fp32."""
    m = (ckpt.get("ema") or ckpt["model"]).float().eval()
    with torch.no_grad():
        return m(X)[0]


@pytest.mark.parametrize("tiny,ema,stripped", [(True, True, False), (True, False, False), (True, True, True),
                                                (False, True, True)])
def test_official_checkpoint_maps_exactly(tmp_path, tiny, ema, stripped):
    model = official.official_model(tiny, nc=3, names=["scratch", "dent", "stain"])
    ckpt = official.official_checkpoint(model, ema=ema, stripped=stripped)
    path = tmp_path / "best.pt"
    official.save_official(ckpt, path)
    assert "models" not in sys.modules  # the loader must not need the official code importable
    loaded = ep.models.load(path)
    assert isinstance(loaded, ep.models.Detector)
    assert loaded.names == ["scratch", "dent", "stain"] and loaded.num_classes == 3
    assert loaded.source["architecture"] == ("yolov7-tiny" if tiny else "yolov7")
    assert next(loaded.parameters()).dtype == torch.float32
    with torch.no_grad():
        got = loaded.eval()(X)
    ref = _reference(ckpt)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() <= 1e-3 * max(1.0, ref.abs().max().item() / 100)


def test_autoanchor_anchors_and_class_count_are_taken_from_the_checkpoint(tmp_path):
    model = official.official_model(True, nc=7)
    new = torch.tensor([[5, 7, 11, 9, 14, 20], [25, 30, 40, 33, 50, 61], [80, 90, 120, 150, 200, 260]],
                       dtype=torch.float32).view(3, 3, 2) + 0.37
    official.set_anchors(model, new)
    ckpt = official.official_checkpoint(model, ema=True)
    official.save_official(ckpt, tmp_path / "last.pt")
    loaded = ep.models.load(tmp_path / "last.pt")
    assert loaded.num_classes == 7 and loaded.names == [f"item{i}" for i in range(7)]
    assert torch.allclose(loaded.detect.anchors, new.half().float())
    with torch.no_grad():
        assert (loaded.eval()(X) - _reference(ckpt)).abs().max().item() <= 1e-2


def test_loaded_model_prunes_and_keeps_bn_eps(tmp_path):
    model = official.official_model(True, nc=2)
    official.save_official(official.official_checkpoint(model, stripped=True), tmp_path / "best.pt")
    loaded = ep.models.load(tmp_path / "best.pt")
    assert all(m.eps == 1e-3 for m in loaded.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = ep.count_params(loaded)
    pruned = ep.prune(loaded, torch.rand(1, 3, 64, 64), sparsity=0.25)
    assert ep.count_params(pruned) < 0.8 * before


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/edgeprune_pwned",))


class _EvalPayload:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", [_Payload(), _EvalPayload()])
def test_malicious_pickle_is_refused_and_not_run(tmp_path, payload):
    marker = Path("/tmp/edgeprune_pwned")
    marker.unlink(missing_ok=True)
    model = official.official_model(True, nc=1)
    ckpt = official.official_checkpoint(model, stripped=True)
    ckpt["training_results"] = payload
    official.save_official(ckpt, tmp_path / "evil.pt")
    with pytest.raises(InvalidModelError, match="refused|does not map"):
        ep.models.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_a_pickled_global_outside_the_official_classes_is_refused(tmp_path):
    model = official.official_model(True, nc=1)
    ckpt = official.official_checkpoint(model, stripped=True)
    ckpt = {"model": ckpt["model"], "x": torch.nn.GELU()}
    official.save_official(ckpt, tmp_path / "odd.pt")
    with pytest.raises(InvalidModelError, match="GELU"):
        ep.models.load(tmp_path / "odd.pt")


def test_other_files_get_a_clear_error(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    with pytest.raises(InvalidModelError, match="plain tensors.*official YOLOv7"):
        ep.models.load(tmp_path / "sd.pt")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07junk")
    with pytest.raises(InvalidModelError, match="ONNX file is already exported"):
        ep.models.load(tmp_path / "m.onnx")
    with zipfile.ZipFile(tmp_path / "z.pt", "w") as zf:
        zf.writestr("a.txt", "x")
    with pytest.raises(InvalidModelError, match="no single data.pkl"):
        ep.models.load(tmp_path / "z.pt")
    with pytest.raises(InvalidModelError, match="not found"):
        ep.models.load(tmp_path / "missing.pt")
    torch.save({"m": torch.nn.Linear(2, 2)}, tmp_path / "lin.pt")
    with pytest.raises(InvalidModelError, match="Linear"):
        ep.models.load(tmp_path / "lin.pt")


def test_prune_config_accepts_model_path(tmp_path):
    from edgeprune.iterative.config import model_factory, validate

    official.save_official(official.official_checkpoint(official.official_model(True, nc=2), stripped=True),
                           tmp_path / "best.pt")
    for d in ("train", "val"):
        (tmp_path / d).mkdir()
    raw = {"model": "best.pt", "data": {"train": "train", "val": "val", "img_size": 64},
           "evaluator": {"kind": "detection"}, "finetune": {"kind": "labeled"}, "targets": {"iterations": 1},
           "run_dir": "run"}
    model = model_factory(validate(raw, tmp_path))()
    assert isinstance(model, ep.models.Detector) and model.names == ["item0", "item1"]
    with pytest.raises(ep.errors.InvalidConfigError, match="model.path"):
        model_factory(validate({**raw, "model": "other.pt"}, tmp_path))
    with pytest.raises(ep.errors.InvalidConfigError, match="exactly one"):
        validate({**raw, "model": {"path": "best.pt", "builtin": "yolov7"}}, tmp_path)
