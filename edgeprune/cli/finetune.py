"""``edgeprune finetune RUN --candidate N``: the recovery fine-tune of one candidate of a pruning run.

Trains candidate N longer than the pruning loop did (``--steps``), evaluates every ``--eval-every``
steps on the validation set (mAP50-95 with a bootstrap interval over images), keeps the best
weights and stops after ``--patience`` evaluations without improvement. Interrupted runs resume;
the result is in RUN/recovery/iter_NN/ (best.pt, recovery.json).

Model and data come from the prune config (``--config prune.yaml``) or, for the demo's run folder
(``demo_out/prune``), from the shipped demo model and ``RUN/../data/{train,val}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgeprune.cli.parsing import add_command


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "finetune", run, help="recovery fine-tune of one candidate of a run (resumable, "
                    "early-stopped)", description=__doc__, raw=True)
    p.add_argument("run", type=Path, help="the pruning run folder (holds iter_XX/)")
    p.add_argument("--candidate", type=int, required=True, help="iteration number of the candidate")
    p.add_argument("--config", type=Path, default=None, help="the prune YAML the run was made with")
    p.add_argument("--train", type=Path, default=None, help="labeled training set (default: from config, "
                   "or RUN/../data/train)")
    p.add_argument("--val", type=Path, default=None, help="labeled validation set (default: from config, "
                   "or RUN/../data/val)")
    p.add_argument("--steps", type=int, default=300, help="step budget (default 300)")
    p.add_argument("--eval-every", type=int, default=50, help="evaluate every N steps (default 50)")
    p.add_argument("--patience", type=int, default=2, help="evaluations without improvement before stopping")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (default 5e-4)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    p.add_argument("--distill", type=float, default=0.0,
                   help="weight of distillation from the unpruned model added to the labeled loss "
                   "(default 0: labels only)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap replicates for intervals (0: off)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier recovery of this candidate")


def _model_and_data(args: argparse.Namespace):
    from edgeprune.errors import InvalidConfigError

    if args.config is not None:
        from edgeprune.iterative import config as prune_config

        cfg = prune_config.load_config(args.config)
        factory = prune_config.model_factory(cfg)
        data = cfg.section("data")
        train = args.train or cfg.path(data["train"])
        val = args.val or cfg.path(data["val"])
        return factory, prune_config.img_size(cfg, factory()), train, val
    from edgeprune.models import demo_model

    default = args.run.resolve().parent / "data"
    train, val = args.train or default / "train", args.val or default / "val"
    if not (Path(train).is_dir() and Path(val).is_dir()):
        raise InvalidConfigError(f"no training/validation data at {train} / {val}: pass --config prune.yaml "
                                 "(the run's config) or --train and --val")
    return demo_model, int(demo_model().img_size), train, val


def run(args: argparse.Namespace) -> int:
    import torch

    from edgeprune.deploy.recovery import RecoveryConfig, recover, recovery_dir
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.training import LabeledFinetune

    if args.threads:
        torch.set_num_threads(args.threads)
    factory, size, train, val = _model_and_data(args)
    teacher = factory().eval() if args.distill > 0 else None
    finetune = LabeledFinetune(train, size, batch_size=args.batch, lr=args.lr, teacher=teacher,
                               distill=args.distill)
    evaluator = DetectionEvaluator(val, size, bootstrap=args.bootstrap, cache_images=True)
    cfg = RecoveryConfig(steps=args.steps, eval_every=args.eval_every, patience=args.patience)
    state = recover(args.run, args.candidate, factory, finetune, evaluator, cfg, fresh=args.fresh)
    p = state["primary"]
    print(f"candidate {args.candidate}: {p} {state['before'][p]:.4f} -> {state['after'][p]:.4f} "
          f"(best at step {state['best_step']}; {state['stop_reason']})")
    if state.get("gain"):
        g = state["gain"]
        print(f"paired difference after - before: {g['point']:+.4f} [{g['low']:+.4f}, {g['high']:+.4f}]"
              + ("" if g["distinguishable"] else " (cannot be told apart from no change)"))
    print(f"weights: {recovery_dir(args.run, args.candidate) / 'best.pt'}")
    return 0
