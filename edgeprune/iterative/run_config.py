"""Run (or resume) the iterative loop from an ``edgeprune prune`` YAML config.

The one place that turns a prune config into an ``iterative_prune`` call: the ``edgeprune prune``
command and ``edgeprune sweep`` with ``run_prune: true`` both call it, so neither depends on the
other's command-line flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeprune.iterative import config as prune_config


def build_executor(cfg: prune_config.PruneConfig, kind: str | None = None,
                   ray_address: str | None = None) -> Any:
    """The config's ``executor`` section, with overrides (``edgeprune prune --executor/--ray-address``).

    ``workers`` (top level) sizes the local pool unless ``executor.workers`` does.
    """
    from edgeprune.errors import InvalidConfigError
    from edgeprune.iterative.executors import EXECUTOR_KEYS, executor_from_config

    spec = dict(cfg.section("executor"))
    if ray_address is not None:
        if kind not in (None, "ray"):
            raise InvalidConfigError(f"--ray-address needs --executor ray, not {kind!r}")
        kind = "ray"
    if kind is not None and kind != spec.get("kind", "local"):
        # switching kind on the command line: the config's keys for the other kind do not apply
        spec = {k: v for k, v in spec.items() if k in EXECUTOR_KEYS[kind]}
        spec["kind"] = kind
    if ray_address is not None:
        spec["address"] = ray_address
    return executor_from_config(spec, cfg.raw.get("workers"))


def run_prune_config(config: str | Path | prune_config.PruneConfig, fresh: bool = False,
                     progress: bool = True, executor: Any = None) -> Any:
    """Build everything the config names, then run (or resume) ``iterative_prune``; returns its result.

    With ``latency.per_target``: ``per_target_prune`` (one run per target), a ``PerTargetResult``.

    ``executor``: where sensitivity runs; default: the config's ``executor`` section (``build_executor``).
    """
    import torch

    from edgeprune.iterative.loop import iterative_prune
    from edgeprune.iterative.options import LatencyOptions, PruneOptions, StopCriteria
    from edgeprune.iterative.selection import SelectionConfig

    cfg = config if isinstance(config, prune_config.PruneConfig) else prune_config.load_config(config)
    if cfg.raw.get("threads"):
        torch.set_num_threads(int(cfg.raw["threads"]))
    factory = prune_config.model_factory(cfg)
    model = factory()
    size = prune_config.img_size(cfg, model)
    teacher = factory()  # fidelity / distillation compare against the unpruned model
    evaluator = prune_config.build_evaluator(cfg, teacher, size)
    finetune = prune_config.build_finetune(cfg, teacher, size)
    sel, tgt, ft = cfg.section("selection"), cfg.section("targets"), cfg.section("finetune")
    executor = executor if executor is not None else build_executor(cfg)
    x = torch.zeros(1, 3, size, size)
    lat = cfg.section("latency")
    stop = StopCriteria(iterations=tgt.get("iterations"), param_sparsity=tgt.get("param_sparsity"),
                        flops_sparsity=tgt.get("flops_sparsity"), metric_floor=tgt.get("metric_floor"))
    scores = {k: sel[k] for k in ("k", "n_params", "n_flops", "n_latency") if k in sel}
    prune = PruneOptions(
        finetune_steps=int(ft.get("steps", 200)),
        selection=SelectionConfig(**scores),
        rates=tuple(sel.get("rates", (0.25, 0.5, 0.75))),
        criterion=sel.get("criterion", "l2"),
        round_to=int(sel.get("round_to", 8)),
        seed=int(cfg.raw.get("seed", 0)),
    )
    latency = LatencyOptions(models=prune_config.latency_models(cfg, model, x),
                             until_knee=bool(lat.get("until_knee", False)),
                             knee_tau=float(lat.get("knee_tau", 0.03)), snap=bool(lat.get("snap", True)))
    kwargs = dict(run_dir=cfg.run_dir, stop=stop, prune=prune, latency=latency, executor=executor,
                  progress=progress, fresh=fresh)
    per = lat.get("per_target")
    if per:  # one run per target, each with its own latency model: N x the pruning time
        from edgeprune.iterative.per_target import per_target_prune

        return per_target_prune(model, x, evaluator, finetune, targets=per if isinstance(per, list) else None,
                                **kwargs)
    return iterative_prune(model, x, evaluator, finetune, **kwargs)
