"""The built-in learning-rate schedules, registered in :data:`ms_suite.registry.SCHEDULES`.

A schedule is ``fn(cfg, progress, epoch_of, floor) -> multiplier of the peak lr`` per step after
warmup: ``progress`` runs 0 -> 1 over those steps, ``epoch_of`` is each step's (fractional) epoch and
``floor`` is ``min_lr`` over the peak lr used. Registered with ``meta={"floored": True}``, the lr never
drops below ``train.min_lr``.
"""
from __future__ import annotations

import math

import numpy as np

from ms_suite.config.schema import TrainConfig
from ms_suite.registry import SCHEDULES

FLOORED = {"floored": True}


@SCHEDULES.register("cosine", meta=FLOORED)
def cosine(cfg: TrainConfig, progress: np.ndarray, epoch_of: np.ndarray, floor: float) -> np.ndarray:
    """Half a cosine from the peak down to ``min_lr``."""
    return floor + (1 - floor) * 0.5 * (1 + np.cos(math.pi * progress))


@SCHEDULES.register("poly", meta=FLOORED)
def poly(cfg: TrainConfig, progress: np.ndarray, epoch_of: np.ndarray, floor: float) -> np.ndarray:
    """Polynomial decay with ``train.power`` down to ``min_lr``."""
    return floor + (1 - floor) * (1 - progress) ** cfg.power


@SCHEDULES.register("step")
def step(cfg: TrainConfig, progress: np.ndarray, epoch_of: np.ndarray, floor: float) -> np.ndarray:
    """Multiply by ``train.gamma`` every ``train.step_epochs`` epochs."""
    return cfg.gamma ** np.floor(epoch_of / cfg.step_epochs)


@SCHEDULES.register("multistep")
def multistep(cfg: TrainConfig, progress: np.ndarray, epoch_of: np.ndarray, floor: float) -> np.ndarray:
    """Multiply by ``train.gamma`` at each epoch in ``train.milestones``."""
    passed = (epoch_of[:, None] >= np.asarray(cfg.milestones)[None, :]).sum(axis=1)
    return cfg.gamma ** passed


@SCHEDULES.register("constant")
def constant(cfg: TrainConfig, progress: np.ndarray, epoch_of: np.ndarray, floor: float) -> np.ndarray:
    """The peak lr throughout (after warmup)."""
    return np.ones_like(progress)
