"""``edgeprune prune CONFIG.yaml [--fresh]``: the iterative pruning loop from a YAML config.

Rerunning the same command resumes an interrupted run (nothing finished is recomputed). Config:

  model: demo                 # or {builtin: yolov7_tiny, num_classes: 5, weights: best.pt}
                              # or {python: "pkg.module:factory", weights: ...}: the module may
                              # sit next to this file (found without PYTHONPATH)
  data: {train: data/train, val: data/val, img_size: 320}
  evaluator: {kind: detection, settings: {bootstrap: 1000}}   # or kind: fidelity; bootstrap: intervals
  finetune: {kind: labeled, steps: 100, lr: 0.0005, batch: 8, settings: {distill: 1.0}}  # or kind: distill
  targets: {iterations: 5, param_sparsity: 0.8, flops_sparsity: null, metric_floor: 0.2}
  selection: {k: 20, n_params: 6, n_flops: 5, rates: [0.25, 0.5, 0.75], criterion: l2, round_to: 8}
  latency: {targets: [{runtime: openvino, threads: 2}], until_knee: true}   # optional; n_latency: 4
  run_dir: runs/prune
  workers: 2                  # sensitivity worker processes (default: all cores)
  executor: {kind: ray, address: auto}   # sensitivity on a Ray cluster (kind: local is the default)
  threads: 1                  # torch threads for fine-tuning / evaluation in the main process
  seed: 0

Relative paths are resolved against the config file's folder. --executor / --ray-address override
the config's executor section; a run moves between local and Ray execution and resumes either way.
"""

from __future__ import annotations

import argparse

from edgeprune.cli.parsing import add_command, add_run_config


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "prune", run, help="iterative sensitivity pruning from a YAML config (resumable)",
                    description=__doc__, raw=True)
    add_run_config(p, "edgeprune.iterative.config",
                   fresh_help="move an existing run folder aside and start over instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--executor", choices=("local", "serial", "ray"), default=None,
                   help="where sensitivity evaluations run (default: the config's executor, else local)")
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="Ray cluster: auto (the one `ray start` started here), host:port or "
                        "ray://host:port; implies --executor ray")


def run(args: argparse.Namespace) -> int:
    """Run (or resume) the iterative loop the config describes, then print its table."""
    from edgeprune.iterative import config as prune_config
    from edgeprune.iterative.run_config import build_executor, run_prune_config

    cfg = prune_config.load_config(args.config)
    executor = build_executor(cfg, args.executor, args.ray_address)
    result = run_prune_config(cfg, fresh=args.fresh, progress=not args.quiet, executor=executor)
    print(result.table())
    if hasattr(result, "results"):  # latency.per_target: one run per target, each table printed above
        return 0
    print(f"\nstopped: {result.stop_reason}; final candidate: iteration {result.final_iteration} "
          f"({cfg.run_dir / f'iter_{result.final_iteration:02d}'})")
    return 0
