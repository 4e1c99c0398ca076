"""compare(): warm-up of all sessions first, then interleaved rounds; per-session feeds; ratios."""

import numpy as np
import pytest

from edgeprune.errors import InvalidConfigError, InvalidInputError
from edgeprune.runtimes.base import Artifact, Session, TensorSpec
from edgeprune.runtimes.compare import compare, round_order
from edgeprune.runtimes.profiling import ProfileConfig


class FakeSession(Session):
    def __init__(self, name, log, input_name="images", shape=(1, 3, 4, 4)):
        super().__init__(Artifact(runtime="fake", path=f"/nowhere/{name}"))
        self.name, self.log = name, log
        self.inputs = [TensorSpec(input_name, shape, np.dtype("float32"))]
        self.outputs = [TensorSpec("output", shape, np.dtype("float32"))]
        self.seen_shapes = set()

    def _run(self, feeds):
        self.log.append(self.name)
        x = next(iter(feeds.values()))
        self.seen_shapes.add(x.shape)
        return [x]

    def environment(self):
        return {"runtime": "fake", "name": self.name}


CFG = ProfileConfig(warmup_runs=2, warmup_s=0, min_runs=4, min_s=0, max_repeats=1)
X = {"images": np.zeros((1, 3, 4, 4), np.float32)}


def test_round_order_rotates():
    assert round_order(["a", "b", "c"], 0, True) == ["a", "b", "c"]
    assert round_order(["a", "b", "c"], 1, True) == ["b", "c", "a"]
    assert round_order(["a", "b", "c"], 4, False) == ["a", "b", "c"]


def test_interleaved_abab_without_rotation():
    log = []
    res = compare({"A": FakeSession("A", log), "B": FakeSession("B", log)}, X, CFG, batch=1, rotate=False)
    assert log[:4] == ["A", "A", "B", "B"]  # every session warmed up before any timing
    assert log[4:] == ["A", "B"] * 4
    assert res["A"].n == 4 and res["B"].n == 4


def test_rotation_alternates_who_goes_first_and_batches():
    log = []
    compare({"A": FakeSession("A", log), "B": FakeSession("B", log)}, X, CFG, batch=2, rotate=True)
    timed = log[4:]
    assert timed == ["A", "A", "B", "B", "B", "B", "A", "A"]


def test_per_session_feeds_and_ratio():
    log = []
    a = FakeSession("A", log, "images", (1, 3, 4, 4))
    b = FakeSession("B", log, "input", (1, 3, 8, 8))
    feeds = {"A": X, "B": {"input": np.zeros((1, 3, 8, 8), np.float32)}}
    res = compare({"A": a, "B": b}, feeds, CFG)
    assert a.seen_shapes == {(1, 3, 4, 4)} and b.seen_shapes == {(1, 3, 8, 8)}
    assert res.ratio_to_first["A"] == 1.0
    assert res.ratio_to_first["B"] == pytest.approx(res["B"].median_ms / res["A"].median_ms)
    d = res.to_dict(samples=False)
    assert set(d["stats"]) == {"A", "B"} and d["interleaved"]["batch"] == 3
    assert res["A"].env["measured_with"]["compare"] == ["A", "B"]


def test_shared_feeds_must_fit_every_session():
    log = []
    with pytest.raises(InvalidInputError, match="missing input 'input'"):
        compare({"A": FakeSession("A", log), "B": FakeSession("B", log, "input")}, X, CFG)


def test_bad_arguments():
    with pytest.raises(InvalidConfigError):
        compare({}, X, CFG)
    with pytest.raises(InvalidConfigError):
        compare({"A": FakeSession("A", [])}, X, CFG, batch=0)
