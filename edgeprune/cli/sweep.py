"""``edgeprune sweep CONFIG.yaml [--fresh]``: every candidate on every target, knee and bundle per target.

Rerunning resumes: finished targets, exports and compiles are reused. See ``edgeprune.deploy.config``
for the config format.
"""

from __future__ import annotations

import argparse

from edgeprune.cli.parsing import add_command, add_run_config


def register(sub: argparse._SubParsersAction) -> None:
    p = add_command(sub, "sweep", run,
                    help="profile pruning candidates per target, pick the knee, write bundles",
                    description=__doc__, raw=True)
    add_run_config(p, "edgeprune.deploy.config",
                   fresh_help="measure every target again (exports and compiles stay cached)")


def run(args: argparse.Namespace) -> int:
    """Load the config, run the sweep, print each target's table with the knee marked."""
    from edgeprune.deploy import config as sweep_config
    from edgeprune.deploy.report_markdown import summary_text
    from edgeprune.deploy.sweep import BundleOptions, KneeOptions, run_img_size, sweep

    cfg = sweep_config.load_config(args.config)
    run_dir, factory, size = sweep_config.resolve_run(cfg)
    raw = cfg.raw
    if size is None:  # the size the run was pruned at, else the model's own
        hw = run_img_size(run_dir)
        size = hw[0] if hw and hw[0] == hw[1] else hw or getattr(factory(), "img_size", None)
    evaluator = None
    if raw.get("evaluate_pick"):
        ev = raw["evaluate_pick"]
        evaluator = sweep_config.DatasetPickEvaluator(cfg.path(ev["data"]), size, ev.get("max_images"))
    knee = KneeOptions(tau=float(raw.get("tau", 0.03)), accuracy_floor=raw.get("accuracy_floor"),
                       accuracy_floor_rel=raw.get("accuracy_floor_rel"))
    res = sweep(
        run_dir, raw["targets"], cfg.path(raw["out_dir"]), model_factory=factory, img_size=size, knee=knee,
        bundle=BundleOptions(evaluator=evaluator, postprocess=raw.get("postprocess")),
        profile_config=raw.get("profile"), fresh=args.fresh,
        latency_cache=cfg.path(raw["latency_cache"]) if raw.get("latency_cache") else None,
        refine=bool(raw.get("refine", False)),
    )
    print(summary_text(res))
    print(f"\nreport: {res.report.get('markdown')}")
    return 1 if res.failed else 0
