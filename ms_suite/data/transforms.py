"""Augmentation, normalisation and mixup/cutmix for the data pipelines.

Image recipes are lists of MindData vision ops applied to the ``image`` column (HWC uint8 in,
CHW float32 out). The embedded ``digits`` set is augmented in numpy instead (:func:`random_shifts`)
so that it is bit-exact across a mid-epoch resume. Means and stds are on the 0-255 pixel scale.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np
import mindspore as ms
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V

from ms_suite.config.schema import DataConfig
from ms_suite.errors import UserError

CIFAR_MEAN = (125.31, 122.95, 113.87)
CIFAR_STD = (62.99, 62.09, 66.70)
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def mean_std(cfg: DataConfig, mean: Sequence[float], std: Sequence[float]) -> Tuple[List[float], List[float]]:
    """``cfg.mean``/``cfg.std`` where set, else the dataset defaults; checked against the channel count."""
    channels = len(mean)
    out = []
    for key, value, default in (("mean", cfg.mean, mean), ("std", cfg.std, std)):
        value = list(default if value is None else value)
        if len(value) != channels:
            raise UserError(f"data.{key} has {len(value)} values but {cfg.name} images have {channels} "
                            f"channel(s); give one value per channel or set data.{key}: null")
        out.append([float(v) for v in value])
    if min(out[1]) <= 0:
        raise UserError(f"data.std must be positive, got {out[1]}")
    return out[0], out[1]


def _normalize(mean: Sequence[float], std: Sequence[float]) -> list:
    """Normalise HWC uint8 to float32 and transpose to CHW."""
    return [V.Normalize(mean=list(mean), std=list(std)), V.HWC2CHW()]


def _flip(cfg: DataConfig) -> list:
    return [V.RandomHorizontalFlip()] if cfg.hflip else []


def cifar_ops(cfg: DataConfig, train: bool) -> list:
    """CIFAR recipe on decoded 32x32 HWC images: pad-4 random crop and flip (train), normalise."""
    augment = [V.RandomCrop(32, padding=4)] + _flip(cfg) if train and cfg.augment else []
    return augment + _normalize(*mean_std(cfg, CIFAR_MEAN, CIFAR_STD))


def imagenet_ops(cfg: DataConfig, train: bool) -> list:
    """ImageNet recipe on encoded images: decode, random-resized crop and flip (train) or
    resize + center crop (eval, or train without augmentation), normalise."""
    if train and cfg.augment:
        geometry = [V.RandomResizedCrop(cfg.image_size, scale=(0.08, 1.0))] + _flip(cfg)
    else:
        geometry = [V.Resize(cfg.eval_resize), V.CenterCrop(cfg.image_size)]
    return [V.Decode()] + geometry + _normalize(*mean_std(cfg, IMAGENET_MEAN, IMAGENET_STD))


def random_shifts(seed: int, epoch: int, n: int, max_shift: int = 1) -> np.ndarray:
    """Crop offsets in ``[0, 2*max_shift]`` per sample index, shape (n, 2) as (dy, dx).

    Sample ``i``'s offset depends only on (seed, epoch, i): not on the order, the shard,
    the workers or where an epoch was resumed.
    """
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    return rng.integers(0, 2 * max_shift + 1, size=(n, 2))


def label_ops(one_hot_classes: Optional[int]) -> list:
    """Cast labels to int32, or to float32 one-hot vectors of ``one_hot_classes`` entries."""
    ops = [T.TypeCast(ms.int32)]
    if one_hot_classes:
        ops += [T.OneHot(one_hot_classes), T.TypeCast(ms.float32)]
    return ops


def mix_op(cfg: DataConfig):
    """Batch op mixing NCHW images and one-hot labels (mixup and/or cutmix), or None when off.

    With both on, each mixed batch picks one of them at random; a batch is mixed with
    probability ``cfg.mix_prob``.
    """
    ops = []
    if cfg.mixup > 0:
        ops.append(V.MixUpBatch(alpha=cfg.mixup))
    if cfg.cutmix > 0:
        ops.append(V.CutMixBatch(V.ImageBatchFormat.NCHW, alpha=cfg.cutmix, prob=1.0))
    if not ops:
        return None
    op = ops[0] if len(ops) == 1 else T.RandomChoice(ops)
    return op if cfg.mix_prob >= 1.0 else T.RandomApply([op], prob=cfg.mix_prob)
