"""Augmentation, normalisation and mixup/cutmix for the data pipelines.

Image recipes are lists of MindData vision ops applied to the ``image`` column (HWC uint8 in,
CHW float32 out). The embedded ``digits`` set is augmented in numpy instead (:func:`random_shifts`),
and mixup/cutmix is drawn in numpy per batch (:class:`BatchMixer`), so both are bit-exact across a
mid-epoch resume. Means and stds are on the 0-255 pixel scale.
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


class BatchMixer:
    """``per_batch_map`` mixing NCHW images and one-hot labels (mixup and/or cutmix) in numpy.

    With both on, each mixed batch picks one of them at random; a batch is mixed with probability
    ``cfg.mix_prob``. Every draw comes from a generator seeded with (seed, epoch, global micro-batch
    index), where local batch ``b`` (counted from the epoch start, so ``first_batch`` is a resume's
    skip) of shard ``k`` of ``num_shards`` is global micro-batch ``b * num_shards + k``: a resumed
    epoch mixes exactly as an uninterrupted one, and ``num_shards`` ranks mix as one process
    accumulating ``num_shards`` micro-batches.
    """

    def __init__(self, cfg: DataConfig, seed: int, epoch: int, first_batch: int = 0, num_shards: int = 1,
                 shard_id: int = 0):
        self.alphas = [(kind, alpha) for kind, alpha in (("mixup", cfg.mixup), ("cutmix", cfg.cutmix)) if alpha > 0]
        self.prob = cfg.mix_prob
        self.seed, self.epoch = seed, epoch
        self.first_batch, self.num_shards, self.shard_id = first_batch, num_shards, shard_id

    @classmethod
    def build(cls, cfg: DataConfig, *args, **kwargs) -> Optional["BatchMixer"]:
        """A mixer for ``cfg``, or None when mixup and cutmix are off."""
        return cls(cfg, *args, **kwargs) if cfg.mixup > 0 or cfg.cutmix > 0 else None

    def __call__(self, images: list, labels: list, batch_info) -> Tuple[np.ndarray, np.ndarray]:
        index = (self.first_batch + batch_info.get_batch_num()) * self.num_shards + self.shard_id
        rng = np.random.default_rng([self.seed, self.epoch, 0x313C, index])
        return self.mix(np.stack(images), np.stack(labels), rng)

    def mix(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Mix one batch with the draws of ``rng``."""
        if rng.random() >= self.prob:
            return images, labels
        kind, alpha = self.alphas[rng.integers(len(self.alphas))]
        partner = rng.permutation(len(images))
        lam = rng.beta(alpha, alpha)
        if kind == "mixup":
            images = lam * images + (1 - lam) * images[partner]
        else:
            images, lam = _cut_and_paste(images, images[partner], lam, rng)
        labels = lam * labels + (1 - lam) * labels[partner]
        return images.astype(np.float32), labels.astype(np.float32)


def _cut_and_paste(images: np.ndarray, others: np.ndarray, lam: float,
                   rng: np.random.Generator) -> Tuple[np.ndarray, float]:
    """CutMix: paste a box of ``1 - lam`` of the area (clipped at the border) from ``others``; returns
    the images and the share of each image that is still its own."""
    height, width = images.shape[-2:]
    cut_h, cut_w = int(height * np.sqrt(1 - lam)), int(width * np.sqrt(1 - lam))
    cy, cx = rng.integers(height), rng.integers(width)
    y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    images = images.copy()
    images[..., y0:y1, x0:x1] = others[..., y0:y1, x0:x1]
    return images, 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
