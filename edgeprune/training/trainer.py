"""A small, step-based trainer: optimizer, warm-up + cosine schedule, EMA, AMP, checkpoints, resume.

The objective is pluggable: any ``objective(model, batch) -> (loss, parts)`` where ``parts`` is a dict
of floats shown in the progress bar (``LabeledObjective`` for the YOLOv7 loss, ``DistillObjective``
for distillation). Training is counted in optimizer steps, not epochs: ``train(steps)`` runs until the
step counter reaches ``steps``, so a resumed run simply continues from its saved step.

Batches are drawn from a per-epoch permutation seeded by ``(seed, epoch)``; together with the saved
RNG states this makes a resumed run follow the same batches as an uninterrupted one.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from edgeprune.errors import InvalidConfigError
from edgeprune.fileio import atomic_write_bytes

Objective = Callable[[nn.Module, Any], "tuple[torch.Tensor, dict[str, float]]"]


@dataclass
class TrainConfig:
    """Training settings. ``lr`` is the peak learning rate reached after warm-up."""

    optimizer: str = "adamw"  # "sgd" | "adamw"
    lr: float = 1e-3
    momentum: float = 0.937  # SGD momentum, or AdamW beta1
    beta2: float = 0.999  # AdamW beta2
    weight_decay: float = 5e-4  # not applied to BatchNorm weights and biases
    warmup_steps: int = 100
    warmup_start: float = 0.1  # lr factor at step 0
    final_lr: float = 0.05  # lr factor at the last step (cosine decay)
    total_steps: int | None = None  # schedule length; None -> the ``steps`` given to train()
    batch_size: int = 16
    num_workers: int = 0
    seed: int = 0
    ema: bool = True
    ema_decay: float = 0.9999
    ema_tau: float = 2000.0  # EMA ramp: decay * (1 - exp(-updates / tau)), as in YOLOv5
    amp: bool = True  # mixed precision, used on CUDA only
    grad_clip: float | None = 10.0
    bn_recalibrate: int = 0  # batches to re-estimate BatchNorm statistics on after training (0 = off)
    channels_last: bool = False  # NHWC memory format for model and batches (benchmarks/bench_finetune.py)
    device: str = "cpu"
    ckpt_dir: str | None = None
    ckpt_every: int = 0  # 0 -> only at the end
    resume: bool = False
    progress: bool | None = None  # None -> show the bar when stderr is a terminal
    extra: dict = field(default_factory=dict)  # free-form settings stored with checkpoints

    def validate(self) -> None:
        """Raise ``InvalidConfigError`` naming the first bad field."""
        if self.optimizer not in ("sgd", "adamw"):
            raise InvalidConfigError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        for name in ("lr", "batch_size"):
            if not getattr(self, name) > 0:
                raise InvalidConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("warmup_steps", "num_workers", "ckpt_every"):
            if getattr(self, name) < 0:
                raise InvalidConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.resume and not self.ckpt_dir:
            raise InvalidConfigError("resume=True needs ckpt_dir")


class ModelEMA:
    """Exponential moving average of a model's weights (YOLOv5's ``ModelEMA``)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        self.decay, self.tau, self.updates = decay, tau, updates
        for p in self.ema.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the current weights in; the ramp keeps early EMA close to the live model."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        msd = model.state_dict()
        for k, v in self.ema.state_dict().items():
            if v.dtype.is_floating_point:
                v.mul_(d).add_(msd[k].detach(), alpha=1 - d)
            else:  # e.g. BatchNorm num_batches_tracked
                v.copy_(msd[k])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two groups: conv/linear weights with decay; BatchNorm weights and all biases without."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            is_norm = isinstance(module, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm))
            (no_decay if is_norm or name in ("bias", "implicit") or p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up from ``warmup_start`` to 1, then cosine decay to ``final_lr``."""
    warm = min(cfg.warmup_steps, max(total - 1, 0))
    if step < warm:
        return cfg.warmup_start + (1.0 - cfg.warmup_start) * step / warm
    span = max(total - warm, 1)
    progress = min((step - warm) / span, 1.0)
    return cfg.final_lr + (1.0 - cfg.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterator[Any], n_batches: int, device: torch.device) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over ``n_batches`` training batches.

    After a short fine-tune (or pruning) the running statistics lag behind the weights (YOLO's BN
    momentum is 0.03), so eval-mode outputs drift from what training optimised; this fixes that
    with forward passes only. ``batches`` yields batches whose first element is the image tensor.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    model.train()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over the batches seen
    try:
        for _ in range(n_batches):
            batch = next(batches)
            images = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(images.to(device))
    finally:
        for m, (momentum, _) in zip(bns, saved):
            m.momentum = momentum
        model.train(was_training)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Train ``model`` on ``dataset`` with ``objective``; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        dataset: Dataset,
        config: TrainConfig | None = None,
        collate_fn: Callable | None = None,
    ) -> None:
        self.cfg = config or TrainConfig()
        self.cfg.validate()
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise InvalidConfigError("the training dataset is empty")
        if not any(p.requires_grad for p in model.parameters()):
            raise InvalidConfigError("the model has no trainable parameters (all have requires_grad=False)")
        self.device = torch.device(self.cfg.device)
        self.model = model.to(self.device)
        if self.cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = objective
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.step = 0
        self.start_step = 0
        self.history: list[dict[str, float]] = []
        self.train_seconds = 0.0
        _seed_everything(self.cfg.seed)
        self.optimizer = self._make_optimizer()
        self.ema = ModelEMA(model, self.cfg.ema_decay, self.cfg.ema_tau) if self.cfg.ema else None
        self.use_amp = bool(self.cfg.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        if self.cfg.resume:
            self._maybe_resume()

    @property
    def ckpt_path(self) -> Path | None:
        """``ckpt_dir/last.pt`` or None when checkpoints are off."""
        return Path(self.cfg.ckpt_dir) / "last.pt" if self.cfg.ckpt_dir else None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        groups = param_groups(self.model, self.cfg.weight_decay)
        if self.cfg.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=self.cfg.lr, momentum=self.cfg.momentum, nesterov=True)
        else:
            opt = torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(self.cfg.momentum, self.cfg.beta2))
        for g in opt.param_groups:
            g["initial_lr"] = self.cfg.lr
        return opt

    def _batches(self) -> Iterator[Any]:
        """Endless batches; each epoch's permutation is seeded by (seed, epoch), so runs resume mid-epoch."""
        n, bs = len(self.dataset), self.cfg.batch_size  # type: ignore[arg-type]
        per_epoch = max(n // bs, 1)  # drop the last incomplete batch unless the set is tiny
        epoch, offset = divmod(self.step, per_epoch)
        while True:
            g = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            perm = torch.randperm(n, generator=g).tolist()
            batches = [perm[i * bs : (i + 1) * bs] for i in range(per_epoch)][offset:]
            loader = DataLoader(
                self.dataset,
                batch_sampler=batches,
                collate_fn=self.collate_fn,
                num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda",
            )
            yield from loader
            epoch, offset = epoch + 1, 0

    def train(self, steps: int) -> nn.Module:
        """Run until the step counter reaches ``steps``; returns the model (EMA weights if EMA is on)."""
        if steps < 0:
            raise InvalidConfigError(f"steps must be >= 0, got {steps}")
        total = self.cfg.total_steps or steps
        self.start_step = self.step
        self.model.train()
        bar = _progress(self.cfg.progress, total=steps, initial=self.step)
        t0 = time.perf_counter()
        try:
            batches = self._batches()
            while self.step < steps:
                batch = _to_device(next(batches), self.device)
                if self.cfg.channels_last and isinstance(batch, (list, tuple)) and batch[0].ndim == 4:
                    batch = (batch[0].contiguous(memory_format=torch.channels_last), *batch[1:])
                parts = self._train_step(batch, total)
                self.history.append(parts)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix({k: f"{v:.4g}" for k, v in parts.items()}, refresh=False)
                if self.cfg.ckpt_every and self.step % self.cfg.ckpt_every == 0 and self.step < steps:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            self.train_seconds += time.perf_counter() - t0
        if self.ckpt_path is not None:
            self.save_checkpoint()
        if self.ema is not None:
            self.model.load_state_dict(self.ema.ema.state_dict())
        if self.cfg.bn_recalibrate:
            recalibrate_bn(self.model, self._batches(), self.cfg.bn_recalibrate, self.device)
        return self.model

    def _train_step(self, batch: Any, total: int) -> dict[str, float]:
        factor = lr_factor(self.step, total, self.cfg)
        for g in self.optimizer.param_groups:
            g["lr"] = self.cfg.lr * factor
        with torch.autocast(self.device.type, enabled=self.use_amp):
            loss, parts = self.objective(self.model, batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.step}: {parts}")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        return {"loss": float(loss.detach()), **parts, "lr": self.cfg.lr * factor}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs: weights, optimizer, EMA, step, RNG states, config."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"kind": "warmup_cosine", "step": self.step},  # lr is a pure function of step
            "ema": None
            if self.ema is None
            else {"state": self.ema.ema.state_dict(), "updates": self.ema.updates},
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "step": self.step,
            "train_seconds": self.train_seconds,
            "rng": _rng_state(),
            # metadata as JSON text: the checkpoint holds only tensors and plain values, so it loads
            # with torch.load(weights_only=True) and no pickle is ever executed on resume
            "config": json.dumps(asdict(self.cfg), default=str),
            "format": CHECKPOINT_FORMAT,
        }

    def save_checkpoint(self) -> Path:
        """Write ``ckpt_dir/last.pt`` atomically."""
        path = self.ckpt_path
        if path is None:
            raise InvalidConfigError("save_checkpoint needs ckpt_dir in the TrainConfig")
        buf = io.BytesIO()
        torch.save(self.state_dict(), buf)
        os.makedirs(path.parent, exist_ok=True)
        return atomic_write_bytes(path, buf.getvalue())

    def _maybe_resume(self) -> None:
        path = self.ckpt_path
        if path is None or not path.exists():
            return  # nothing saved yet: start from scratch
        ckpt = load_checkpoint(path, self.device)
        try:
            self.model.load_state_dict(ckpt["model"])
        except RuntimeError as e:
            raise InvalidConfigError(
                f"checkpoint {path} does not fit this model (pruned differently?): {e}"
            ) from e
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.ema.load_state_dict(ckpt["ema"]["state"])
            self.ema.updates = int(ckpt["ema"]["updates"])
        if self.scaler is not None and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        self.step = int(ckpt["step"])
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        _set_rng_state(ckpt["rng"])


CHECKPOINT_FORMAT = "edgeprune.train_checkpoint.v2"


def load_checkpoint(path: str | os.PathLike, device: Any = "cpu") -> dict[str, Any]:
    """A training checkpoint read with ``weights_only=True`` (tensors and plain values only);
    InvalidConfigError for a file that is not one (old format, another tool's, crafted or corrupt)."""
    fix = f"delete {path} (or set resume: false) to start fine-tuning from the model's current weights"
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001  (UnpicklingError, RuntimeError for truncated zips, ...)
        raise InvalidConfigError(f"checkpoint {path} cannot be read safely ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160] if str(e) else ''}); it was not written "
                                 f"by this edgeprune, or is damaged; {fix}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InvalidConfigError(f"checkpoint {path} is not an edgeprune training checkpoint of format "
                                 f"{CHECKPOINT_FORMAT}; {fix}")
    return ckpt


def _progress(enabled: bool | None, total: int, initial: int):
    if enabled is False:
        return None
    from tqdm.auto import tqdm

    disable = None if enabled is None else False
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=disable)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain lists (loadable with ``weights_only=True``)."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(py_state), gauss],
             "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss),
                       float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.cpu().numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
