"""``edgeprune demo``: the whole story on this machine, in a few minutes on 2 CPU cores.

The shipped demo detector (a YOLOv7-tiny trained on synthetic surface-defect images) is pruned
iteratively with fine-tuning (the paper's sensitivity loop), every candidate is exported to ONNX,
compiled and profiled side by side on each runtime installed here, the knee of the latency curve is
picked per target, and a bundle an OpenCV app can run is written for each pick, with a report.

Every stage resumes: rerunning the command continues where it stopped; ``--fresh`` starts clean.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgeprune.errors import InvalidConfigError


@dataclass
class DemoConfig:
    """Sizes of the demo run, chosen so it finishes in under 10 minutes on 2 CPU cores."""

    out_dir: Path = Path("demo_out")
    train_images: int = 160
    val_images: int = 200  # the fixed validation set: candidates and picks are scored on all of it
    sensitivity_images: int = 32  # the many single-layer prunes of the sensitivity analysis: a subset
    bootstrap: int = 1000  # replicates of the confidence interval over validation images
    iterations: int = 3
    finetune_steps: int = 90
    finetune_lr: float = 5e-4  # measured on the demo: 30 steps at 5e-4 kept more mAP than at 1e-4
    distill: float = 0.0  # weight of distillation from the unpruned model added to the labels (0: off);
    # benchmarks/bench_recovery.py at this budget (90 steps, 2 seeds): +0.1/+0.2 points over labels, 1.6x CPU
    recovery_steps: int = 60  # recovery fine-tune of each pick (0: off), early-stopped on validation mAP
    recovery_eval_every: int = 30
    recovery_patience: int = 2
    batch_size: int = 8
    rates: tuple[float, ...] = (0.25, 0.5, 0.75)
    n_params: int = 6
    n_flops: int = 5
    round_to: int = 8
    workers: int | None = None
    runtimes: tuple[str, ...] | None = None
    threads: int = 2
    profile_min_runs: int = 30
    profile_min_s: float = 1.5
    tau: float = 0.03
    accuracy_floor_rel: float = 0.75
    seed: int = 0
    latency: bool = False  # latency models per runtime: latency-saved selection, loop until the knee
    refine: bool = False  # interpolated one-shot points between the two candidates around each knee
    per_target: bool = False  # with latency: one pruning run per runtime (N x the pruning time)

    @classmethod
    def full(cls, **overrides) -> DemoConfig:
        """The longer preset (``edgeprune demo --full``): more data and fine-tuning, same pipeline."""
        values = {"out_dir": Path("demo_full_out"), "train_images": 1000, "iterations": 4,
                  "finetune_steps": 300, "recovery_steps": 1200, "recovery_eval_every": 200,
                  "recovery_patience": 2, **overrides}
        return cls(**values)


def default_runtimes() -> tuple[str, ...]:
    """onnxruntime and openvino by default, opencv when present (the runtimes installed here)."""
    from edgeprune.runtimes import available

    here = set(available())
    return tuple(n for n in ("onnxruntime", "openvino", "opencv") if n in here)


def _log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _dataset(path: Path, n: int, seed: int, size: tuple[int, int]) -> Path:
    """Generate the synthetic split once; a complete earlier one (data.yaml written last) is reused."""
    import yaml

    from edgeprune.data import synthetic

    marker = path / "data.yaml"
    if marker.exists():
        info = yaml.safe_load(marker.read_text(encoding="utf-8")) or {}
        if info.get("n_images") == n and info.get("seed") == seed:
            return path
    return synthetic.generate(path, n, seed=seed, img_size=size)


def _recovery_hook(cfg: DemoConfig, run_dir: Path, sweep_dir: Path, finetune, evaluator, size: int):
    """The recovery fine-tune of each pick before it is bundled (None when ``recovery_steps`` is 0)."""
    if not cfg.recovery_steps:
        return None
    from edgeprune.deploy.recovery import RecoveryConfig, recovery_hook
    from edgeprune.models import demo_model

    rc = RecoveryConfig(steps=cfg.recovery_steps, eval_every=min(cfg.recovery_eval_every, cfg.recovery_steps),
                        patience=cfg.recovery_patience)
    return recovery_hook(run_dir, demo_model, finetune, evaluator, sweep_dir, size, rc)


def run_demo(cfg: DemoConfig, fresh: bool = False) -> dict:
    """Run (or resume) the demo; returns the paths of the report and the bundles."""
    import torch

    from edgeprune.deploy import sweep
    from edgeprune.deploy.report_markdown import summary_text
    from edgeprune.evaluation import DetectionEvaluator
    from edgeprune.iterative import SelectionConfig, iterative_prune
    from edgeprune.iterative.executors import default_executor
    from edgeprune.models import demo_model
    from edgeprune.runtimes.profiling import ProfileConfig
    from edgeprune.training import LabeledFinetune

    if cfg.per_target and not cfg.latency:
        raise InvalidConfigError("per_target needs latency (CLI: --latency --per-target): each runtime's "
                                 "own run is driven by its latency model")
    out = Path(cfg.out_dir)
    if fresh and out.exists():
        _log(f"--fresh: removing {out}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    runtimes = cfg.runtimes or default_runtimes()
    if not runtimes:
        raise InvalidConfigError("no runtime is installed; install edgeprune[onnxruntime] or [openvino]")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)

    from edgeprune.models.demo import demo_model_info

    model = demo_model()
    size = int(model.img_size)
    # generate images like those the demo model was trained on (then letterboxed to `size`)
    gen = tuple(demo_model_info().get("data", {}).get("gen_size", (size, size)))
    _log(f"demo model: yolov7_tiny, {len(model.names)} classes {model.names}, input {size}x{size}")
    _log(f"1/3 synthetic data: {cfg.train_images} train + {cfg.val_images} val images in {out / 'data'}")
    train = _dataset(out / "data" / "train", cfg.train_images, 100 + cfg.seed, gen)
    val = _dataset(out / "data" / "val", cfg.val_images, 200 + cfg.seed, gen)

    _log(f"2/3 iterative pruning: {cfg.iterations} iterations, sensitivity at rates {cfg.rates}, "
         f"{cfg.finetune_steps} fine-tune steps each, channels rounded to {cfg.round_to}")
    evaluator = DetectionEvaluator(val, size, batch_size=8, bootstrap=cfg.bootstrap, cache_images=True)
    sens_evaluator = DetectionEvaluator(val, size, batch_size=8, max_images=cfg.sensitivity_images,
                                        cache_images=True)
    teacher = demo_model().eval() if cfg.distill > 0 else None
    finetune = LabeledFinetune(train, size, batch_size=cfg.batch_size, lr=cfg.finetune_lr, seed=cfg.seed,
                               teacher=teacher, distill=cfg.distill)
    example = torch.zeros(1, 3, size, size)
    targets = [{"name": r, "runtime": r, "precision": "fp32", "threads": cfg.threads} for r in runtimes]
    selection = SelectionConfig(n_params=cfg.n_params, n_flops=cfg.n_flops)
    models, run_dir = {}, out / "prune"
    if cfg.latency:  # the same number of groups per iteration, chosen by predicted latency saved
        from edgeprune.deploy.predicted import build_models
        from edgeprune.deploy.targets import targets_from_config

        _log("latency models: each conv profiled alone on each runtime (cached in latency_cache/)")
        models = build_models(targets_from_config(targets), model, example, out / "latency_cache")
        if models:  # else (no runtime could be profiled) the paper's selection, in its own folder
            selection = SelectionConfig(n_params=0, n_flops=0, n_latency=cfg.n_params + cfg.n_flops)
        run_dir = out / "prune-latency"
    prune_fn = iterative_prune
    if cfg.per_target and models:  # each runtime its own candidates: one run per runtime
        from edgeprune.iterative.per_target import per_target_prune

        prune_fn, run_dir = per_target_prune, out / "prune-per-target"
        if len(models) < len(targets):  # a runtime without a latency model has no run of its own
            left_out = [t["name"] for t in targets if t["name"] not in models]
            _log(f"per target: no latency model for {left_out}; sweeping the others")
            targets = [t for t in targets if t["name"] in models]
    result = prune_fn(
        model, example, evaluator, finetune,
        run_dir=run_dir, iterations=cfg.iterations, finetune_steps=cfg.finetune_steps,
        selection=selection, rates=cfg.rates,
        round_to=cfg.round_to, executor=default_executor(cfg.workers), seed=cfg.seed,
        latency_models=list(models.values()), until_knee=bool(models), knee_tau=cfg.tau,
        sensitivity_evaluator=sens_evaluator,
    )
    stops = [f"{n}: {r.stop_reason}" for n, r in result.results.items()] if hasattr(result, "results") \
        else [result.stop_reason]
    _log(f"pruning finished after {time.perf_counter() - t0:.0f} s ({'; '.join(stops)})")

    _log(f"3/3 sweep on {', '.join(runtimes)}: export, compile, profile side by side, knee, bundles")
    sweep_dir = out / ("sweep-per-target" if run_dir.name == "prune-per-target" else
                       "sweep-latency" if cfg.latency else "sweep")
    res = sweep(
        run_dir, targets, sweep_dir, model_factory=demo_model,
        img_size=size, tau=cfg.tau, accuracy_floor_rel=cfg.accuracy_floor_rel,
        profile_config=ProfileConfig(min_runs=cfg.profile_min_runs, min_s=cfg.profile_min_s),
        latency_models=models or None, refine=cfg.refine,
        recovery=_recovery_hook(cfg, run_dir, sweep_dir, finetune, evaluator, size),
    )
    print(summary_text(res))
    for name, tr in res.targets.items():
        if tr.recovery:
            p = res.candidates[0].primary
            print(f"recovery of the {name} pick: {p} {tr.recovery['before'][p]:.4f} -> "
                  f"{tr.recovery['after'][p]:.4f} ({tr.recovery['stop_reason']})")
    print(f"\npruning candidates (mAP on the demo's {cfg.val_images} validation images, with the "
          "bootstrap interval):")
    print(result.table())
    _log(f"done in {time.perf_counter() - t0:.0f} s")
    return {"report": res.report, "bundles": {n: t.bundle for n, t in res.targets.items()},
            "knees": {n: t.knee.candidate_id for n, t in res.targets.items()}}
