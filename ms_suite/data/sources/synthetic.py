"""Random images and labels generated per sample index (throughput work, no files)."""
from __future__ import annotations

import numpy as np

from ms_suite.config.schema import DataConfig
from ms_suite.data.source import SPLITS, Source, generator_dataset
from ms_suite.registry import DATASETS


@DATASETS.register("synthetic")
class Synthetic(Source):
    """Random tensors and labels, generated per index from the seed (throughput work)."""

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        self.num_classes = cfg.num_classes
        self.input_shape = (3, cfg.image_size, cfg.image_size)
        self.num_samples = {"train": cfg.synthetic_samples, "eval": max(1, cfg.synthetic_samples // 4)}

    def leaf(self, split, sampler, seed, epoch):
        stream, shape, classes = SPLITS.index(split), self.input_shape, self.num_classes

        def row(i: int) -> tuple:
            rng = np.random.default_rng([seed, stream, i])
            return rng.random(shape, dtype=np.float32), np.int32(rng.integers(classes))

        return generator_dataset(self.num_samples[split], row, sampler, self.cfg.num_workers)
