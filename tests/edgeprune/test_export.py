"""ONNX export: verified against onnxruntime, metadata round trip, atomic writes, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from edgeprune.errors import ExportError, InvalidModelError
from edgeprune.export import ExportResult, export_onnx, read_metadata
from edgeprune.models import yolov7_tiny
from edgeprune.pruning import prune as ep_prune

NAMES = ["scratch", "dent", "stain", "crack", "missing_hole"]


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(0)
    return yolov7_tiny(num_classes=5, names=NAMES)


@pytest.fixture(scope="module")
def exported(tiny: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> tuple[ExportResult, torch.Tensor]:
    x = torch.rand(1, 3, 160, 192, generator=torch.Generator().manual_seed(1))
    tiny.train()  # export must switch to eval and restore this
    path = tmp_path_factory.mktemp("export") / "sub" / "tiny.onnx"
    result = export_onnx(tiny, x, path, metadata={"sparsity": 0.25, "plan_sha256": "ab" * 32, "note": "t"})
    assert tiny.training, "export_onnx must restore the model's train/eval mode"
    return result, x


def test_export_verifies_and_matches_torch(tiny: nn.Module, exported) -> None:
    result, x = exported
    assert result.path.is_file() and result.path.name == "tiny.onnx"
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-2
    sess = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["images"]
    assert [o.name for o in sess.get_outputs()] == ["output"]
    assert sess.get_inputs()[0].shape == [1, 3, 160, 192]  # static shapes
    got = sess.run(None, {"images": x.numpy()})[0]
    tiny.eval()
    try:
        with torch.no_grad():
            ref = tiny(x).numpy()
    finally:
        tiny.train()
    assert got.shape == ref.shape == (1, 3 * (20 * 24 + 10 * 12 + 5 * 6), 10)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
    assert float(np.abs(got - ref).max()) == pytest.approx(result.max_abs_diff, abs=1e-6)


def test_onnx_graph_is_opset17_and_simplified(exported, tmp_path: Path) -> None:
    result, _ = exported
    proto = onnx.load(str(result.path))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    op_types = {n.op_type for n in proto.graph.node}
    assert "Conv" in op_types and "Sigmoid" in op_types
    # the grid/anchor constants are folded: no shape arithmetic left in a static graph
    assert not op_types & {"Shape", "Range", "Gather", "ConstantOfShape"}


def test_metadata_round_trip(exported) -> None:
    result, _ = exported
    meta = read_metadata(result.path)
    assert meta == result.metadata
    assert meta["input_name"] == "images" and meta["output_name"] == "output"
    assert meta["input_size"] == [160, 192]
    assert meta["layout"] == "NCHW" and meta["color"] == "RGB"
    assert meta["letterbox"] == {"pad_value": 114}
    assert meta["normalization"]["scale"] == pytest.approx(1 / 255)
    assert meta["class_names"] == NAMES
    assert meta["output_layout"] == "cxcywh_obj_cls"
    assert meta["sparsity"] == 0.25 and meta["plan_sha256"] == "ab" * 32 and meta["note"] == "t"
    assert isinstance(meta["edgeprune_version"], str) and meta["edgeprune_version"]


class _CallCounter(nn.Module):
    """Python-side state the tracer bakes in as a constant: the ONNX graph disagrees with eager."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return (self.conv(x) * self.calls).flatten(2).transpose(1, 2)


def test_mismatch_raises_and_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "m.onnx"
    target.write_bytes(b"old")
    with pytest.raises(ExportError, match="max abs diff"):
        export_onnx(_CallCounter(), torch.rand(1, 3, 32, 32), target)
    assert target.read_bytes() == b"old"  # nothing half-written, no stray temp files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    # the same model exports when verification is off (the user takes the risk knowingly)
    res = export_onnx(_CallCounter(), torch.rand(1, 3, 32, 32), target, verify=False, simplify=False)
    assert res.max_abs_diff is None
    assert read_metadata(target)["class_names"] == [f"class{i}" for i in range(3)]


def test_bad_inputs_raise_clear_errors(tmp_path: Path) -> None:
    model = yolov7_tiny(num_classes=1)
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(InvalidModelError, match="torch.Tensor"):
        export_onnx(model, np.zeros((1, 3, 64, 64), np.float32), tmp_path / "a.onnx")
    with pytest.raises(InvalidModelError, match="exactly one tensor"):
        export_onnx(model, (x, x), tmp_path / "a.onnx")
    with pytest.raises(InvalidModelError, match="float tensor"):
        export_onnx(model, torch.zeros(3, 64, 64), tmp_path / "a.onnx")
    with pytest.raises(ExportError, match="is a directory"):
        export_onnx(model, x, tmp_path)
    with pytest.raises(InvalidModelError, match="nn.Module"):
        export_onnx(lambda t: t, x, tmp_path / "a.onnx")
    with pytest.raises(ExportError, match="JSON"):
        export_onnx(model, x, tmp_path / "a.onnx", metadata={"bad": object()})
    with pytest.raises(InvalidModelError, match=r"one tensor \[B, N, K\].*got \(1, 3, 64, 64\)"):
        export_onnx(nn.Identity(), [x], tmp_path / "a.onnx")
    with pytest.raises(InvalidModelError, match="forward failed"):
        export_onnx(nn.Linear(2, 2), x, tmp_path / "a.onnx")
    assert not (tmp_path / "a.onnx").exists()


def test_read_metadata_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not found"):
        read_metadata(tmp_path / "missing.onnx")
    plain = tmp_path / "plain.onnx"
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])], "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    onnx.save(onnx.helper.make_model(graph), str(plain))
    with pytest.raises(ExportError, match="no edgeprune metadata"):
        read_metadata(plain)
    model = onnx.load(str(plain))
    model.metadata_props.add(key="edgeprune", value="{not json")
    onnx.save(model, str(plain))
    with pytest.raises(ExportError, match="not valid JSON"):
        read_metadata(plain)


def test_export_pruned_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = yolov7_tiny(num_classes=5, names=NAMES)
    x = torch.rand(1, 3, 128, 128)
    n_before = sum(p.numel() for p in model.parameters())
    pruned = ep_prune(model, x, sparsity=0.5)
    assert sum(p.numel() for p in pruned.parameters()) < n_before
    res = export_onnx(pruned, x, tmp_path / "pruned.onnx", metadata={"sparsity": 0.5})
    assert res.max_abs_diff is not None and res.max_abs_diff < 1e-2
    assert read_metadata(res.path)["class_names"] == NAMES
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    assert sess.run(None, {"images": x.numpy()})[0].shape == (1, 3 * (16 * 16 + 8 * 8 + 4 * 4), 10)
