"""``edgeprune prune CONFIG.yaml``: config validation errors name the field; the command runs end to end."""

from __future__ import annotations

import copy

import pytest
import yaml

from edgeprune.cli import main
from edgeprune.errors import InvalidConfigError
from edgeprune.iterative.config import validate


@pytest.fixture
def base_config(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    return {
        "model": {"builtin": "yolov7_tiny", "num_classes": 5},
        "data": {"train": "train", "val": "val", "img_size": 64},
        "evaluator": {"kind": "detection", "settings": {"max_images": 4}},
        "finetune": {"kind": "labeled", "steps": 2, "lr": 0.001, "batch": 2},
        "targets": {"iterations": 1},
        "selection": {"k": 20, "n_params": 1, "n_flops": 1, "rates": [0.5], "criterion": "l2", "round_to": 8},
        "run_dir": "run",
        "workers": 1,
    }


def test_valid_config_resolves_paths(base_config, tmp_path):
    cfg = validate(base_config, tmp_path)
    assert cfg.run_dir == tmp_path / "run"
    assert validate({**base_config, "model": "demo"}, tmp_path).section("model") == {"builtin": "demo"}


@pytest.mark.parametrize("path, value, field", [
    (("bogus",), 1, "bogus"),
    (("model", "builtin"), "resnet", "model.builtin"),
    (("model", "python"), "no_colon", "model"),  # builtin and python together
    (("data", "img_size"), 100, "data.img_size"),
    (("data", "train"), "missing_folder", "data.train"),
    (("evaluator", "kind"), "accuracy", "evaluator.kind"),
    (("finetune", "kind"), "full", "finetune.kind"),
    (("finetune", "steps"), -1, "finetune.steps"),
    (("targets", "iterations"), 0, "targets.iterations"),
    (("targets", "param_sparsity"), 1.5, "targets.param_sparsity"),
    (("selection", "rates"), [0.5, 1.0], "selection.rates"),
    (("selection", "criterion"), "magic", "selection.criterion"),
    (("selection", "round_to"), 0, "selection.round_to"),
    (("selection", "topk"), 3, "selection.topk"),
    (("workers",), 0, "workers"),
    (("threads",), "two", "threads"),
])
def test_bad_field_is_named(base_config, tmp_path, path, value, field):
    raw = copy.deepcopy(base_config)
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(InvalidConfigError, match=field.replace(".", r"\.")):
        validate(raw, tmp_path)


def test_no_target_and_missing_section(base_config, tmp_path):
    with pytest.raises(InvalidConfigError, match="'targets'"):
        validate({**base_config, "targets": {"iterations": None}}, tmp_path)
    raw = dict(base_config)
    del raw["evaluator"]
    with pytest.raises(InvalidConfigError, match="'evaluator'"):
        validate(raw, tmp_path)


def test_cli_reports_config_errors(base_config, tmp_path, capsys):
    bad = copy.deepcopy(base_config)
    bad["targets"]["iterations"] = "many"
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["prune", str(path)]) == 1
    assert "targets.iterations" in capsys.readouterr().err
    assert main(["prune", str(tmp_path / "nope.yaml")]) == 1
    assert "not found" in capsys.readouterr().err


@pytest.fixture
def restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the config's `threads: 1` must not leak into other tests


@pytest.mark.slow
def test_cli_runs_and_resumes_end_to_end(tmp_path, capsys, restore_threads):
    import torch

    from edgeprune.data.synthetic import generate
    from edgeprune.iterative import list_candidates
    from edgeprune.models import yolov7_tiny

    generate(tmp_path / "train", 4, seed=0, img_size=(64, 64), progress=False)
    generate(tmp_path / "val", 2, seed=1, img_size=(64, 64), progress=False)
    torch.manual_seed(0)
    torch.save(yolov7_tiny(num_classes=5).state_dict(), tmp_path / "w.pt")
    config = {
        "model": {"builtin": "yolov7_tiny", "num_classes": 5, "weights": "w.pt"},
        "data": {"train": "train", "val": "val", "img_size": 64},
        "evaluator": {"kind": "detection", "settings": {"max_images": 2}},
        "finetune": {"kind": "labeled", "steps": 1, "batch": 2, "settings": {"augment": False}},
        "targets": {"iterations": 1},
        "selection": {"n_params": 1, "n_flops": 1, "rates": [0.5], "round_to": 8},
        "run_dir": "run",
        "workers": 1,
        "threads": 1,
    }
    path = tmp_path / "prune.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["prune", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "| 0 | 6.0" in out and "stopped:" in out
    run = tmp_path / "run"
    first = list_candidates(run)
    assert first[0].params > 6_000_000 and (run / "iter_01" / "selection.json").exists()
    assert len(list((run / "iter_01" / "sensitivity").glob("*/rows/*.json"))) == 55  # yolov7-tiny: 55 groups
    # The same command again resumes: nothing new is computed, the same candidates come back.
    mtime = (run / "iter_00" / "metrics.json").stat().st_mtime_ns
    assert main(["prune", str(path), "--quiet"]) == 0
    assert list_candidates(run) == first
    assert (run / "iter_00" / "metrics.json").stat().st_mtime_ns == mtime
