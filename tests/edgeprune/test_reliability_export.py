"""Export refuses graphs that tracing froze to one branch of value-dependent Python control flow."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeprune.errors import ExportError
from edgeprune.export import export_onnx


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 7, 1)

    def rows(self, y):
        return y.flatten(2).transpose(1, 2).sigmoid()  # [B, N, 7]


class BranchOnMean(Head):
    def forward(self, x):
        y = self.conv(x)
        if x.mean() > 0.5:  # data-dependent: tracing keeps only the branch the example took
            y = y * 3.0
        return self.rows(y)


class Plain(Head):
    def forward(self, x):
        return self.rows(self.conv(x))


X = torch.zeros(1, 3, 32, 32)


def test_tracer_warnings_are_an_error(tmp_path):
    with pytest.raises(ExportError, match="allow_tracer_warnings=True"):
        export_onnx(BranchOnMean(), X, tmp_path / "m.onnx", simplify=False)
    assert not (tmp_path / "m.onnx").exists()


def test_second_input_catches_a_frozen_branch_even_when_warnings_are_allowed(tmp_path):
    with pytest.warns(UserWarning, match="tracer warnings"):
        with pytest.raises(ExportError, match="second, different input"):
            export_onnx(BranchOnMean(), X, tmp_path / "m.onnx", simplify=False, allow_tracer_warnings=True)
    assert not (tmp_path / "m.onnx").exists()


def test_plain_model_exports(tmp_path):
    res = export_onnx(Plain(), X, tmp_path / "m.onnx", simplify=False)
    assert res.path.exists() and res.max_abs_diff is not None and res.max_abs_diff < 1e-4
