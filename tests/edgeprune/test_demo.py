"""`edgeprune demo` end to end at a tiny size: data, iterative pruning, sweep, report, bundle."""

import numpy as np
import pytest

from edgeprune.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    cfg = DemoConfig(
        out_dir=tmp_path / "demo", train_images=16, val_images=8, iterations=1, finetune_steps=2,
        batch_size=4, rates=(0.5,), n_params=3, n_flops=2, workers=1, runtimes=("onnxruntime",),
        profile_min_runs=5, profile_min_s=0.2, sensitivity_images=4, bootstrap=50, recovery_steps=2,
        recovery_eval_every=1, accuracy_floor_rel=0.0,
    )
    result = run_demo(cfg)
    out = capsys.readouterr().out
    assert "knee" in out and "onnxruntime" in out
    report = tmp_path / "demo" / "sweep" / "report.md"
    text = report.read_text()
    assert report.exists() and "<- knee" in text
    assert "bootstrap interval" in text  # candidates carry their interval over the validation images
    import json

    bundle_dir = tmp_path / "demo" / "sweep" / "bundles" / "onnxruntime"
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    if result["knees"]["onnxruntime"] != "iter_00":  # a pruned pick is recovered before it is bundled
        assert "before_recovery" in manifest["accuracy"] and "Recovery fine-tune" in text
    bundle = result["bundles"]["onnxruntime"]
    assert bundle and (tmp_path / "demo" / "sweep" / "bundles" / "onnxruntime" / "manifest.json").exists()

    # the bundle runs without the training code and finds drawn defects in a fresh synthetic image
    from edgeprune.data.synthetic import generate_image
    from edgeprune.runtimes import load_bundle

    img, objects = generate_image(np.random.default_rng([7, 7]), (320, 320), 4)
    with load_bundle(bundle) as det:
        d = det.detect(img)
        assert det.timings["calls"] == 1 and det.timings["infer_ms"] > 0
    assert d.boxes.shape[1] == 4 and (d.boxes[:, 2] <= 320 + 1e-3).all()

    # a rerun resumes: nothing is pruned again (the candidate files keep their modification times)
    weights = tmp_path / "demo" / "prune" / "iter_01" / "weights.pt"
    mtime = weights.stat().st_mtime_ns
    run_demo(cfg)
    assert weights.stat().st_mtime_ns == mtime
