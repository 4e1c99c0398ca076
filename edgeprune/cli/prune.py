"""``edgeprune prune CONFIG.yaml [--fresh]``: the iterative pruning loop from a YAML config.

Rerunning the same command resumes an interrupted run (nothing finished is recomputed). Config:

  model: demo                 # or {builtin: yolov7_tiny, num_classes: 5, weights: best.pt}
                              # or {python: "pkg.module:factory", weights: ...}
  data: {train: data/train, val: data/val, img_size: 320}
  evaluator: {kind: detection, settings: {max_images: 32}}     # or kind: fidelity
  finetune: {kind: labeled, steps: 100, lr: 0.0005, batch: 8}  # or kind: distill
  targets: {iterations: 5, param_sparsity: 0.8, flops_sparsity: null, metric_floor: 0.2}
  selection: {k: 20, n_params: 6, n_flops: 5, rates: [0.25, 0.5, 0.75], criterion: l2, round_to: 8}
  run_dir: runs/prune
  workers: 2                  # sensitivity worker processes (default: all cores)
  threads: 1                  # torch threads for fine-tuning / evaluation in the main process
  seed: 0

Relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="iterative sensitivity pruning from a YAML config (resumable)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="YAML config (see edgeprune.iterative.config)")
    p.add_argument("--fresh", action="store_true",
                   help="move an existing run folder aside and start over instead of resuming")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build everything the config names, then run (or resume) ``iterative_prune``."""
    import torch

    from edgeprune.iterative import LocalProcessExecutor, SelectionConfig, SerialExecutor, iterative_prune
    from edgeprune.iterative import config as prune_config

    cfg = prune_config.load_config(args.config)
    if cfg.raw.get("threads"):
        torch.set_num_threads(int(cfg.raw["threads"]))
    factory = prune_config.model_factory(cfg)
    model = factory()
    size = prune_config.img_size(cfg, model)
    teacher = factory()  # fidelity / distillation compare against the unpruned model
    evaluator = prune_config.build_evaluator(cfg, teacher, size)
    finetune = prune_config.build_finetune(cfg, teacher, size)
    sel, tgt, ft = cfg.section("selection"), cfg.section("targets"), cfg.section("finetune")
    workers = cfg.raw.get("workers")
    executor = SerialExecutor() if workers == 1 else LocalProcessExecutor(workers)
    result = iterative_prune(
        model, torch.zeros(1, 3, size, size), evaluator, finetune,
        run_dir=cfg.run_dir,
        iterations=tgt.get("iterations"),
        target_param_sparsity=tgt.get("param_sparsity"),
        target_flops_sparsity=tgt.get("flops_sparsity"),
        metric_floor=tgt.get("metric_floor"),
        finetune_steps=int(ft.get("steps", 200)),
        selection=SelectionConfig(**{k: sel[k] for k in ("k", "n_params", "n_flops") if k in sel}),
        rates=tuple(sel.get("rates", (0.25, 0.5, 0.75))),
        criterion=sel.get("criterion", "l2"),
        round_to=int(sel.get("round_to", 1)),
        executor=executor,
        progress=not args.quiet,
        seed=int(cfg.raw.get("seed", 0)),
        fresh=args.fresh,
    )
    print(result.table())
    print(f"\nstopped: {result.stop_reason}; final candidate: iteration {result.final_iteration} "
          f"({cfg.run_dir / f'iter_{result.final_iteration:02d}'})")
    return 0
