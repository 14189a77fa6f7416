"""Optimizers and learning-rate schedules, one registry each (:data:`ms_suite.registry.OPTIMIZERS`,
:data:`ms_suite.registry.SCHEDULES`); a new one is a decorated function in a new file of this package."""
from __future__ import annotations

import numpy as np
from mindspore import Tensor, nn

from ms_suite.config.schema import TrainConfig
from ms_suite.engine.optim.optimizers import param_groups
from ms_suite.registry import OPTIMIZERS, SCHEDULES

__all__ = ["build_lr_schedule", "build_optimizer"]


def build_optimizer(net: nn.Cell, cfg: TrainConfig, lr: np.ndarray) -> nn.Optimizer:
    """``train.optimizer`` over ``net``'s trainable params, driven by the per-step ``lr`` array."""
    return OPTIMIZERS.get(cfg.optimizer)(param_groups(net, cfg), Tensor(lr), cfg)


def build_lr_schedule(cfg: TrainConfig, steps_per_epoch: int, peak_lr: float) -> np.ndarray:
    """One learning rate per optimizer step for the whole run (float32 array): linear warmup from
    ``peak_lr * warmup_start_factor``, then ``train.schedule``."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)
    steps = np.arange(total, dtype=np.float64)
    progress = np.clip((steps - warmup) / max(total - warmup, 1), 0.0, 1.0)
    lr = peak_lr * SCHEDULES.get(cfg.schedule)(cfg, progress, steps / steps_per_epoch, cfg.min_lr / peak_lr)
    if warmup:
        ramp = cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * steps[:warmup] / warmup
        lr[:warmup] = peak_lr * ramp
    if (SCHEDULES.meta(cfg.schedule) or {}).get("floored"):
        lr[warmup:] = np.maximum(lr[warmup:], cfg.min_lr)
    return lr.astype(np.float32)
