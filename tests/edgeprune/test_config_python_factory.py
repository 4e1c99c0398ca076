"""A ``{python: "mod:fn"}`` model factory in a config is found next to the config, without PYTHONPATH."""

from __future__ import annotations

import sys

import pytest

from edgeprune.deploy import config as sweep_config
from edgeprune.errors import InvalidConfigError

FACTORY = '''
from edgeprune.models import yolov7_tiny


def build(num_classes=3):
    return yolov7_tiny(num_classes=num_classes, names=["a", "b", "c"][:num_classes])
'''


@pytest.fixture
def clean_path():
    before = list(sys.path)
    yield
    sys.path[:] = before
    sys.modules.pop("my_factory_next_to_config", None)


def test_python_factory_next_to_the_config(tmp_path, clean_path):
    cfg_dir = tmp_path / "project"
    cfg_dir.mkdir()
    (cfg_dir / "my_factory_next_to_config.py").write_text(FACTORY)
    (cfg_dir / "sweep.yaml").write_text(
        "run_dir: run\nmodel: {python: 'my_factory_next_to_config:build', kwargs: {num_classes: 2}}\n"
        "img_size: 64\ntargets: [{runtime: onnxruntime}]\nout_dir: out\n")
    assert str(cfg_dir) not in sys.path
    cfg = sweep_config.load_config(cfg_dir / "sweep.yaml")
    run_dir, factory, size = sweep_config.resolve_run(cfg)
    model = factory()
    assert model.names == ["a", "b"] and size == 64 and run_dir == cfg_dir / "run"


def test_python_factory_missing_module_names_the_field(tmp_path, clean_path):
    (tmp_path / "sweep.yaml").write_text(
        "run_dir: run\nmodel: {python: 'no_such_module_xyz:build'}\n"
        "img_size: 64\ntargets: [{runtime: onnxruntime}]\nout_dir: out\n")
    _, factory, _ = sweep_config.resolve_run(sweep_config.load_config(tmp_path / "sweep.yaml"))
    with pytest.raises(InvalidConfigError, match="model.python"):
        factory()
