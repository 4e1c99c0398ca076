"""Deployment: the per-target sweep, knee selection, report and bundles.

The package is `edgeprune.deploy`; its main function is `ep.sweep` (`edgeprune.deploy.sweep`).

res = ep.sweep("runs/demo", targets=[{"runtime": "onnxruntime", "threads": 2}], out_dir="sweep",
               model_factory=ep.models.demo_model)
res.targets["onnxruntime-fp32-t2"].knee.candidate_id
"""

from edgeprune.deploy.bundle import write_bundle
from edgeprune.deploy.candidate_files import SweepCandidate
from edgeprune.deploy.knee import KneePoint, KneeResult, find_inversions, select_knee
from edgeprune.deploy.sweep import BundleOptions, KneeOptions, SweepResult, TargetResult, sweep
from edgeprune.deploy.targets import Target, target_from_config, targets_from_config

__all__ = [
    "BundleOptions",
    "KneeOptions",
    "KneePoint",
    "KneeResult",
    "SweepCandidate",
    "SweepResult",
    "Target",
    "TargetResult",
    "find_inversions",
    "select_knee",
    "sweep",
    "target_from_config",
    "targets_from_config",
    "write_bundle",
]

