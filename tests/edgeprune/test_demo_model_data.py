"""The shipped demo model's metrics belong to the data today's synthetic generator draws."""

from __future__ import annotations

import json

from edgeprune.data.synthetic import output_sha256
from edgeprune.models.demo import DEMO_INFO


def test_generator_still_draws_the_validation_set_the_demo_model_was_measured_on():
    info = json.loads(DEMO_INFO.read_text())
    val, size = info["data"]["val"], tuple(info["data"]["gen_size"])
    assert info["evaluation"]["val_images"] == val["n_images"]
    got = output_sha256(val["n_images"], seed=val["seed"], img_size=size)
    # If this fails the generator changed: re-measure the shipped model on the new data
    # (python examples/train_demo_model.py --eval-only) and update the README's figures.
    assert got == {"pixels_sha256": val["pixels_sha256"], "labels_sha256": val["labels_sha256"]}


def test_output_hash_follows_the_seed():
    a, b = output_sha256(3, seed=5, img_size=(96, 96)), output_sha256(3, seed=6, img_size=(96, 96))
    assert a != b and a == output_sha256(3, seed=5, img_size=(96, 96))
