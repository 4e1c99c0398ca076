"""Built-in YOLOv7 models: size against the published numbers, output contract, decode formula."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import edgeprune as ep
from edgeprune.errors import InvalidConfigError
from edgeprune.models import IDetect, ImplicitA, ImplicitM, yolov7, yolov7_tiny
from edgeprune.models.common import RepConv

# Published (WongKinYiu/yolov7 README) sizes of the deploy form at 640x640, 80 classes.
PUBLISHED = {"yolov7": (36.9e6, 104.7e9), "yolov7_tiny": (6.2e6, 13.7e9)}


def _conv_flops(model: nn.Module, x: torch.Tensor, skip: set[int] = frozenset()) -> int:
    """2 x MACs of every Conv2d (bias excluded), counted with forward hooks."""
    total = 0

    def hook(m: nn.Conv2d, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if id(m) not in skip:
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            total += 2 * k * out[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return total


def _deploy_size(model: nn.Module, x: torch.Tensor) -> tuple[int, int]:
    """Params / FLOPs after the standard YOLOv7 re-parameterisation (what the paper reports).

    BN folds into a bias per conv output, RepConv's 1x1 branch folds into its 3x3 conv, implicit
    layers fold into the output conv: so every kept conv has weight + one bias per output.
    """
    folded = {id(m.rbr_1x1[0]) for m in model.modules() if isinstance(m, RepConv)}
    kept = [m for m in model.modules() if isinstance(m, nn.Conv2d) and id(m) not in folded]
    params = sum(m.weight.numel() + m.out_channels for m in kept)
    return params, _conv_flops(model, x, folded)


@pytest.mark.parametrize(
    "factory", [yolov7_tiny, pytest.param(yolov7, marks=pytest.mark.slow)], ids=["yolov7_tiny", "yolov7"])
def test_size_matches_published(factory) -> None:
    model = factory()
    x = torch.zeros(1, 3, 640, 640)
    pub_params, pub_flops = PUBLISHED[factory.__name__]
    params, flops = _deploy_size(model, x)
    assert abs(params - pub_params) / pub_params < 0.01, params
    assert abs(flops - pub_flops) / pub_flops < 0.01, flops
    # the training form only adds RepConv 1x1 branches, BN affine params and implicit layers
    train_params = ep.count_params(model)
    train_flops = ep.count_flops(model, x)
    assert 0 < train_params - params < 0.02 * params
    assert 0 <= train_flops - flops < 0.015 * flops


@pytest.mark.parametrize("factory,batch,h,w", [(yolov7_tiny, 2, 128, 160), (yolov7, 1, 96, 64)],
                         ids=["yolov7_tiny", "yolov7"])
def test_output_shapes_train_and_eval(factory, batch: int, h: int, w: int) -> None:
    model = factory(num_classes=3)
    x = torch.rand(batch, 3, h, w)
    model.train()
    raw = model(x)
    assert isinstance(raw, list) and len(raw) == model.detect.nl == 3
    for out, s in zip(raw, (8, 16, 32)):
        assert out.shape == (batch, 3, h // s, w // s, 8)
    model.eval()
    with torch.no_grad():
        dec = model(x)
    n = sum(3 * (h // s) * (w // s) for s in (8, 16, 32))
    assert dec.shape == (batch, n, 8)
    assert torch.all((dec[..., 4:] >= 0) & (dec[..., 4:] <= 1))


def test_decode_consistent_with_raw() -> None:
    torch.manual_seed(0)
    model = yolov7_tiny(num_classes=2)
    x = torch.rand(1, 3, 128, 192)
    model.eval()
    with torch.no_grad():
        dec = model(x)
        model.detect.train()  # raw logits from the head, BN still in eval mode
        raw = model(x)
    det = model.detect
    level, a, gy, gx = 1, 2, 3, 5  # one cell of the stride-16 level
    ny, nx = raw[level].shape[2:4]
    offset = sum(r.shape[1] * r.shape[2] * r.shape[3] for r in raw[:level])
    idx = offset + (a * ny + gy) * nx + gx
    logits = raw[level][0, a, gy, gx]
    s = logits.sigmoid()
    stride = det.stride[level]
    expect = torch.cat([
        torch.stack([(s[0] * 2 - 0.5 + gx) * stride, (s[1] * 2 - 0.5 + gy) * stride]),
        (s[2:4] * 2) ** 2 * det.anchors[level, a],
        s[4:],
    ])
    torch.testing.assert_close(dec[0, idx], expect)


def test_contract_attributes_and_defaults() -> None:
    model = yolov7_tiny()
    det = model.detect
    assert isinstance(det, IDetect)
    assert model.num_classes == 80 and model.names[:2] == ["class0", "class1"] and len(model.names) == 80
    assert det.nl == 3 and det.na == 3
    assert det.stride.tolist() == [8.0, 16.0, 32.0]
    assert det.anchors.shape == (3, 3, 2) and det.anchors[0, 0].tolist() == [10.0, 13.0]
    assert "detect.anchors" in dict(model.named_buffers())
    assert yolov7().detect.anchors[2, 2].tolist() == [459.0, 401.0]
    # YOLOv7 init: BN eps/momentum, objectness prior in the output bias
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert (bn.eps, bn.momentum) == (1e-3, 0.03)
    obj_bias = det.m[0].bias.view(3, 85)[:, 4]
    assert torch.all(obj_bias < -4)  # log(8 / 80**2) = -6.68 plus a small random init
    assert sum(isinstance(m, ImplicitA) for m in model.modules()) == 3
    assert sum(isinstance(m, ImplicitM) for m in model.modules()) == 3


def test_activations_per_model() -> None:
    assert any(isinstance(m, nn.LeakyReLU) for m in yolov7_tiny().modules())
    assert not any(isinstance(m, nn.SiLU) for m in yolov7_tiny().modules())
    big = yolov7()
    assert not any(isinstance(m, nn.LeakyReLU) for m in big.modules())
    reps = [m for m in big.modules() if isinstance(m, RepConv)]
    assert len(reps) == 3 and all(r.rbr_identity is None for r in reps)


def test_custom_classes_and_names() -> None:
    names = ["scratch", "dent", "stain", "crack", "missing_hole"]
    model = yolov7_tiny(num_classes=5, names=names)
    assert model.num_classes == 5 and model.names == names
    assert model.detect.m[0].out_channels == 3 * 10
    with pytest.raises(InvalidConfigError, match="names"):
        yolov7_tiny(num_classes=5, names=["a", "b"])
    with pytest.raises(InvalidConfigError, match="num_classes"):
        yolov7_tiny(num_classes=0)


def test_eval_decode_has_no_stale_grid_cache() -> None:
    model = yolov7_tiny(num_classes=1).eval()
    with torch.no_grad():
        small = model(torch.rand(1, 3, 64, 64))
        large = model(torch.rand(1, 3, 96, 128))
    assert small.shape[1] == 3 * (64 + 16 + 4)
    # the last cell of the stride-32 level sits near the right/bottom edge of the larger input
    assert large[0, -1, 0] > 128 - 32 - 16 and large[0, -1, 1] > 96 - 32 - 16
