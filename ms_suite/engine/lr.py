"""Per-step learning-rate schedules: linear warmup, then cosine, step, multistep, poly or constant."""
from __future__ import annotations

import math

import numpy as np

from ms_suite.config.schema import TrainConfig


def build_lr_schedule(cfg: TrainConfig, steps_per_epoch: int, peak_lr: float) -> np.ndarray:
    """One learning rate per optimizer step for the whole run (float32 array)."""
    total = cfg.epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)
    steps = np.arange(total, dtype=np.float64)
    epoch_of = steps / steps_per_epoch
    decay = _decay(cfg, steps - warmup, max(total - warmup, 1), epoch_of, cfg.min_lr / peak_lr)
    lr = peak_lr * decay
    if warmup:
        ramp = cfg.warmup_start_factor + (1 - cfg.warmup_start_factor) * steps[:warmup] / warmup
        lr[:warmup] = peak_lr * ramp
    if cfg.schedule in ("cosine", "poly"):
        lr[warmup:] = np.maximum(lr[warmup:], cfg.min_lr)
    return lr.astype(np.float32)


def _decay(cfg: TrainConfig, since_warmup: np.ndarray, span: int, epoch_of: np.ndarray,
           floor: float) -> np.ndarray:
    """Multiplier of the peak lr; cosine and poly end at ``floor`` (min_lr over the peak lr actually used)."""
    progress = np.clip(since_warmup / span, 0.0, 1.0)
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + np.cos(math.pi * progress))
    if cfg.schedule == "poly":
        return floor + (1 - floor) * (1 - progress) ** cfg.power
    if cfg.schedule == "step":
        return cfg.gamma ** np.floor(epoch_of / cfg.step_epochs)
    if cfg.schedule == "multistep":
        passed = (epoch_of[:, None] >= np.asarray(cfg.milestones)[None, :]).sum(axis=1)
        return cfg.gamma ** passed
    return np.ones_like(since_warmup)
