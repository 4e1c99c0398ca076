"""One forward pass on example inputs, in eval mode, leaving the model as it was found."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from edgeprune.errors import InvalidModelError


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)`` for a tensor, a tuple/list or a dict."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (list, tuple)):
        return model(*inputs)
    raise InvalidModelError("example_inputs must be a tensor, a tuple/list or a dict of tensors")


@contextmanager
def eval_mode(model: nn.Module, hooks: list | None = None) -> Iterator[nn.Module]:
    """The model in eval mode; on exit every module gets its own train/eval mode back and the
    ``hooks`` handles are removed."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for h in hooks or ():
            h.remove()
        for m, mode in modes.items():
            m.train(mode)
