"""CIFAR-10 from its binary release (``cifar-10-batches-bin``)."""
from __future__ import annotations

import os
from typing import Sequence

import mindspore.dataset as ds
import numpy as np

from ms_suite.config.schema import DataConfig
from ms_suite.data import transforms
from ms_suite.data.source import Source, data_root, generator_dataset
from ms_suite.errors import UserError
from ms_suite.registry import DATASETS


@DATASETS.register("cifar10")
class Cifar10(Source):
    """CIFAR-10 binary batches (``data_batch_1..5.bin``, ``test_batch.bin``)."""

    num_classes, input_shape = 10, (3, 32, 32)
    FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "eval": ["test_batch.bin"]}
    RECORD = 1 + 32 * 32 * 3
    OFFICIAL_RECORDS = 10000  # Cifar10Dataset reads exactly this many from every file

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        self.folder = self._find_folder(data_root(cfg))
        self.records = {s: [self._count(os.path.join(self.folder, f)) for f in files]
                        for s, files in self.FILES.items()}
        self.num_samples = {s: sum(counts) for s, counts in self.records.items()}

    def _find_folder(self, root: str) -> str:
        expected = self.FILES["train"] + self.FILES["eval"]
        candidates = [root, os.path.join(root, "cifar-10-batches-bin")]
        folder = next((c for c in candidates if any(os.path.isfile(os.path.join(c, f)) for f in expected)), root)
        missing = [f for f in expected if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise UserError(f"data.path: {folder} is missing {', '.join(missing)}; expected the CIFAR-10 binary "
                            "batches data_batch_1..5.bin and test_batch.bin there or in cifar-10-batches-bin/ "
                            "(extract cifar-10-binary.tar.gz)")
        return folder

    def _count(self, path: str) -> int:
        size = os.path.getsize(path)
        if size == 0 or size % self.RECORD:
            raise UserError(f"{path}: {size} bytes is not a whole number of {self.RECORD}-byte CIFAR-10 records "
                            "(truncated or corrupt); download the CIFAR-10 binary version again")
        return size // self.RECORD

    def leaf(self, split, sampler, seed, epoch):
        workers = self.cfg.num_workers
        if all(n == self.OFFICIAL_RECORDS for n in self.records[split]):
            usage = "train" if split == "train" else "test"
            return ds.Cifar10Dataset(self.folder, usage=usage, sampler=sampler, num_parallel_workers=workers)
        # Other record counts (subsets, test fixtures): Cifar10Dataset rejects them, read them in numpy.
        records = _read_records([os.path.join(self.folder, f) for f in self.FILES[split]], self.RECORD)

        def row(i: int) -> tuple:
            return records[i, 1:].reshape(3, 32, 32).transpose(1, 2, 0), records[i, 0]

        return generator_dataset(len(records), row, sampler, workers)

    def image_ops(self, split):
        return transforms.cifar_ops(self.cfg, split == "train")


def _read_records(paths: Sequence[str], record: int) -> np.ndarray:
    return np.concatenate([np.fromfile(p, dtype=np.uint8).reshape(-1, record) for p in paths])
