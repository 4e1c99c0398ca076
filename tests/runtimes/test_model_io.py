"""The torch-free model I/O description and decoding of both output layouts."""

from __future__ import annotations

import numpy as np
import pytest

from edgeprune.errors import InvalidConfigError, InvalidDataError
from edgeprune.runtimes.model_io import ModelIO
from edgeprune.runtimes.postprocess import postprocess


def test_round_trips_through_json_and_manifest():
    io = ModelIO(input_size=(320, 256), class_names=("a", "b"), output_layout="cxcywh_cls", pad_value=0)
    assert ModelIO.from_json(io.to_json()) == io
    assert ModelIO.from_manifest(io.to_manifest()) == io
    assert io.row_width == 6 and ModelIO((64, 64), ("a",)).row_width == 6  # 4+2 vs 4+1+1
    assert io.to_manifest()["input"]["size"] == [320, 256]


@pytest.mark.parametrize("bad,match", [
    ({"input_size": [0, 64]}, "input_size"),
    ({"class_names": []}, "class_names"),
    ({"output_layout": "xyxy"}, "output_layout"),
    ({"letterbox": {"pad_value": 300}}, "pad_value"),
    ({"normalization": {"scale": -1}}, "scale"),
    ({"color": "YUV"}, "color"),
])
def test_invalid_descriptions_name_the_field(bad, match):
    d = {**ModelIO((64, 64), ("a",)).to_dict(), **bad}
    with pytest.raises(InvalidConfigError, match=match):
        ModelIO.from_dict(d)
    with pytest.raises(InvalidConfigError, match="input_size"):
        ModelIO.from_dict({"class_names": ["a"]})


def test_postprocess_decodes_both_layouts_to_the_same_boxes():
    rows_cls = np.array([[50, 50, 20, 20, 0.9, 0.1], [52, 50, 20, 20, 0.8, 0.05], [10, 10, 4, 4, 0.02, 0.7]],
                        np.float32)
    obj = np.ones((3, 1), np.float32)
    rows_obj = np.concatenate([rows_cls[:, :4], obj, rows_cls[:, 4:]], 1)
    a = postprocess(rows_cls, 0.25, 0.45, layout="cxcywh_cls")
    b = postprocess(rows_obj, 0.25, 0.45, layout="cxcywh_obj_cls")
    assert len(a) == 2 and a.class_ids.tolist() == [0, 1]
    np.testing.assert_allclose(a.boxes, b.boxes)
    np.testing.assert_allclose(a.scores, [0.9, 0.7])
    # read as the other layout the same rows mean something else
    assert postprocess(rows_cls, 0.25, 0.45, layout="cxcywh_obj_cls").class_ids.tolist() != [0, 1]
    with pytest.raises(InvalidDataError, match="layout"):
        postprocess(rows_cls, layout="yolo")
