"""The shared one-epoch pipeline over a registered dataset source (:mod:`ms_suite.data.sources`).

Every source is mappable: :func:`build_dataset` computes this rank's sample order itself
(:func:`shard_indices`) and feeds it with ``mindspore.dataset.SubsetSampler``, so the order is a
pure function of (seed, epoch, batch_size, num_shards, shard_id) and a mid-epoch resume skips
exactly the samples already seen.

Determinism: the ``digits`` and ``synthetic`` sources are generated in numpy per sample index, and
mixup/cutmix is drawn in numpy per (seed, epoch, micro-batch index) (:class:`BatchMixer`), so they
are bit-exact across a resume. Native MindData random ops (crops, flips) are seeded
with ``mindspore.dataset.config.set_seed`` from (seed, epoch, skip_batches): deterministic for a
fixed ``num_workers``, but a resumed epoch does not reproduce the crops of an uninterrupted run.
MindData reads that seed when the iterator is created, so create a train dataset's iterator
before building the next train dataset (eval datasets do not touch the seed).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
from typing import Optional, Sequence

import numpy as np
import mindspore.dataset as ds

from ms_suite.config.schema import DataConfig
from ms_suite.data import transforms
from ms_suite.data.source import SPLITS, DatasetInfo, Source, TextInfo
from ms_suite.errors import UserError
from ms_suite.registry import DATASETS

log = logging.getLogger("ms_suite")



def _source(cfg: DataConfig) -> Source:
    return DATASETS.get(cfg.name)(cfg)


# --------------------------------------------------------------------------- order and batching


def train_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``n`` train samples for ``epoch``, drawn from a generator seeded with the pair
    (seed, epoch): no two pairs share an order (``seed + epoch`` would make seed s, epoch e+1 replay
    seed s+1, epoch e)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)


def shard_indices(n: int, split: str, *, seed: int = 0, epoch: int = 0, num_shards: int = 1,
                  shard_id: int = 0, batch_size: int = 1) -> np.ndarray:
    """This rank's sample indices for one epoch, before any resume skip.

    Train: :func:`train_order` cut into global batches of
    ``G = batch_size * num_shards`` (the incomplete last one dropped); at step ``i`` rank ``k``
    takes ``perm[i*G + k*batch_size : i*G + (k+1)*batch_size]``. So ``num_shards`` ranks see the
    same micro-batches as one process with ``batch_size`` and ``num_shards`` accumulation steps.
    Eval: sequential, not truncated (every sample is evaluated once); rank ``k`` takes the ``k``-th
    of ``num_shards`` contiguous runs of whole batches (:func:`eval_shard`), so each sample meets the
    same batch neighbours as in one process and the ranks' outputs, joined in rank order, are the
    single-process outputs.
    """
    _check_split(split)
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id={shard_id} is not in [0, num_shards={num_shards})")
    if split == "eval":
        return np.arange(n)[eval_shard(n, batch_size, num_shards, shard_id)]
    order = train_order(n, seed, epoch)
    steps = n // (batch_size * num_shards)
    return order[:steps * batch_size * num_shards].reshape(steps, num_shards, batch_size)[:, shard_id].ravel()


def eval_shard(n: int, batch_size: int, num_shards: int, shard_id: int) -> slice:
    """The eval samples of rank ``k = shard_id`` of ``S = num_shards``: the single-process batches
    ``k*m//S`` to ``(k+1)*m//S - 1`` of ``m = ceil(n / batch_size)``; ranks differ by at most one batch."""
    batches = math.ceil(n / batch_size)
    first, last = (batches * k // num_shards for k in (shard_id, shard_id + 1))
    return slice(first * batch_size, min(last * batch_size, n))


def _num_batches(n: int, split: str, batch_size: int, num_shards: int) -> int:
    if split == "train":
        return (n // num_shards) // batch_size
    return math.ceil(math.ceil(n / batch_size) / num_shards)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_train_batches(cfg: DataConfig, n: int, batch_size: int, num_shards: int) -> None:
    if _num_batches(n, "train", batch_size, num_shards) == 0:
        raise UserError(f"data: the {cfg.name} train split has {n // num_shards} samples per device, fewer "
                        f"than one batch of {batch_size}; lower train.batch_size")


def _seed_native_ops(seed: int, epoch: int, skip_batches: int) -> None:
    """Seed MindData's random ops from (seed, epoch, skip_batches).

    ``ds.config.set_seed`` also reseeds Python's ``random`` and ``numpy.random``; their states are
    restored so building a dataset has no effect on the caller's global generators.
    """
    value = int(np.random.SeedSequence([seed, epoch, skip_batches]).generate_state(1)[0])
    py_state, np_state = random.getstate(), np.random.get_state()
    ds.config.set_seed(value)
    random.setstate(py_state)
    np.random.set_state(np_state)


def _model_classes(cfg: DataConfig, dataset_classes: int, num_classes: Optional[int]) -> int:
    if num_classes is None:
        return dataset_classes
    if num_classes < dataset_classes:
        raise UserError(f"model.num_classes={num_classes} is smaller than the {dataset_classes} classes of "
                        f"data.name={cfg.name}; raise model.num_classes or leave it null")
    return num_classes


# --------------------------------------------------------------------------- public API


def text_info(cfg: DataConfig) -> TextInfo:
    """Sequence length and vocabulary of a text dataset (what a BERT task checks its model against)."""
    return _source(cfg).text_info()


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    """Classes, model input shape and split sizes, without decoding any image."""
    src = _source(cfg)
    return DatasetInfo(src.num_classes, tuple(src.input_shape), dict(src.num_samples))


def steps_per_epoch(cfg: DataConfig, split: str, batch_size: int, num_shards: int = 1) -> int:
    """Batches per epoch on one rank (eval: on the rank with the most samples)."""
    _check_split(split)
    n = _source(cfg).num_samples[split]
    if split == "train":
        _check_train_batches(cfg, n, batch_size, num_shards)
    return _num_batches(n, split, batch_size, num_shards)


def build_dataset(cfg: DataConfig, split: str, batch_size: int, *, seed: int = 0, epoch: int = 0,
                  skip_batches: int = 0, num_shards: int = 1, shard_id: int = 0,
                  num_classes: Optional[int] = None) -> ds.Dataset:
    """One epoch of ``split`` for this rank: batched ``image`` (float32 NCHW) and ``label`` columns.

    Labels are int32, or float32 one-hot vectors of ``num_classes`` (default: the dataset's) when
    mixup/cutmix is on; eval labels are always int32 and eval is never augmented or mixed.
    ``skip_batches`` resumes a train epoch after that many batches.
    """
    _check_split(split)
    cfg = _within_cpu_count(cfg)
    src, train = _source(cfg), split == "train"
    n = src.num_samples[split]
    indices = shard_indices(n, split, seed=seed, epoch=epoch, num_shards=num_shards, shard_id=shard_id,
                            batch_size=batch_size)
    if train:
        _check_train_batches(cfg, n, batch_size, num_shards)
        steps = len(indices) // batch_size
        if not 0 <= skip_batches <= steps:
            raise ValueError(f"skip_batches={skip_batches} is outside this epoch's {steps} batches")
        indices = indices[skip_batches * batch_size:]
        _seed_native_ops(seed, epoch, skip_batches)
    mixer = transforms.BatchMixer.build(cfg, seed, epoch, skip_batches, num_shards, shard_id) if train else None
    return _pipeline(src, split, indices.tolist(), batch_size,
                     _model_classes(cfg, src.num_classes, num_classes), seed, epoch, mixer)


def _within_cpu_count(cfg: DataConfig) -> DataConfig:
    """MindData refuses more workers than cores; recipes written for big hosts still run here."""
    cores = os.cpu_count() or 1
    if cfg.num_workers <= cores:
        return cfg
    log.info("data.num_workers=%d > %d CPU cores here; using %d", cfg.num_workers, cores, cores)
    return dataclasses.replace(cfg, num_workers=cores)


def _pipeline(src: Source, split: str, indices: Sequence[int], batch_size: int, classes: int,
              seed: int, epoch: int, mixer: Optional[transforms.BatchMixer]) -> ds.Dataset:
    """Read ``indices`` in order, transform, batch (and mix) them."""
    cfg, train = src.cfg, split == "train"
    # An empty SubsetSampler crashes MindData (segfault): read one row and drop its batch instead.
    data = src.leaf(split, ds.SubsetSampler(list(indices) or [0]), seed, epoch)
    image_ops = src.image_ops(split)
    if image_ops:
        data = data.map(image_ops, "image", num_parallel_workers=cfg.num_workers, python_multiprocessing=False)
    if "label" in src.columns:
        data = data.map(transforms.label_ops(classes if mixer else None), "label")
    if mixer:
        data = data.batch(batch_size, drop_remainder=train, per_batch_map=mixer, input_columns=["image", "label"])
    else:
        data = data.batch(batch_size, drop_remainder=train)
    return data if indices else data.skip(1)
