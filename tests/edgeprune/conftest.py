"""Fixtures shared by the host-side tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (the same arithmetic in every process), then restore."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """``synthetic_data(n, seed, img_size=(320, 320))``: the root of a generated YOLO dataset, made
    once per session for each setting (tests only read it)."""
    from edgeprune.data.synthetic import generate

    made: dict[tuple, Path] = {}

    def make(n: int, seed: int, img_size: tuple[int, int] = (320, 320)) -> Path:
        key = (n, seed, tuple(img_size))
        if key not in made:
            made[key] = generate(tmp_path_factory.mktemp("syn") / "d", n, seed=seed, img_size=img_size,
                                 progress=False)
        return made[key]

    return make
