"""What a dataset source is: the base class every registered dataset implements, and shared helpers.

A source says what a dataset holds (classes, input shape, samples per split: cheap to compute) and
how to read one split in a given sample order; :func:`ms_suite.data.build_dataset` does the rest.
Register a new one with ``@DATASETS.register("name")`` in a file of :mod:`ms_suite.data.sources`.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore.dataset as ds

from ms_suite.config.schema import DataConfig
from ms_suite.errors import UserError

SPLITS = ("train", "eval")
IMAGE_COLUMNS = ["image", "label"]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a schedule need to know about a dataset."""

    num_classes: int
    input_shape: Tuple[int, int, int]  # (C, H, W) the model sees
    num_samples: Dict[str, int]  # {"train": N, "eval": M}


@dataclasses.dataclass(frozen=True)
class TextInfo:
    """What a BERT task checks against its model: sequence length and vocabulary."""

    seq_len: int
    vocab_size: Optional[int]
    vocab_file: Optional[str]


class Source:
    """A dataset type: what it holds (cheap to compute) and how to read a split in a given order."""

    num_classes: int
    input_shape: Tuple[int, ...]
    num_samples: Dict[str, int]
    columns: List[str] = IMAGE_COLUMNS  # what leaf() yields, in order (text sources have their own)

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def leaf(self, split: str, sampler: ds.Sampler, seed: int, epoch: int) -> ds.Dataset:
        """Mappable dataset with ``self.columns`` read in ``sampler``'s order."""
        raise NotImplementedError

    def image_ops(self, split: str) -> list:
        """MindData ops turning a leaf image into a CHW float32 tensor (empty: already one)."""
        return []

    def text_info(self) -> TextInfo:
        """Sequence length and vocabulary; text sources only."""
        raise UserError(f"data.name={self.cfg.name} is not a text dataset; BERT recipes read text_classification, "
                        "token_classification or bert_pretraining")


class _Indexed:
    """Random-access GeneratorDataset source whose row ``i`` is ``fn(i)``."""

    def __init__(self, n: int, fn: Callable[[int], tuple]):
        self.n, self.fn = n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        return self.fn(int(i))


def generator_dataset(n: int, fn: Callable[[int], tuple], sampler: ds.Sampler, workers: int,
               columns: Sequence[str] = IMAGE_COLUMNS) -> ds.Dataset:
    return ds.GeneratorDataset(_Indexed(n, fn), list(columns), sampler=sampler,
                               num_parallel_workers=workers, python_multiprocessing=False)


def data_root(cfg: DataConfig) -> str:
    """``cfg.path`` as an existing folder, or a UserError saying what to set."""
    if not cfg.path:
        raise UserError(f"data.name={cfg.name} needs its dataset folder: set data.path")
    path = os.path.expanduser(cfg.path)
    if not os.path.isdir(path):
        raise UserError(f"data.path {cfg.path!r} does not exist or is not a folder; "
                        f"point data.path at the {cfg.name} dataset")
    return path


def read_mindrecord_header(files: List[str]) -> Tuple[dict, int]:
    """(schema, sample count) of MindRecord ``files``; an unreadable file is a UserError."""
    from mindspore.mindrecord import FileReader

    try:
        reader = FileReader(files if len(files) > 1 else files[0])
        schema, count = reader.schema(), reader.len()
        reader.close()
    except Exception as exc:  # MindRecord raises several types for unreadable files
        raise UserError(f"cannot read MindRecord {files[0]} ({str(exc).strip().splitlines()[0]}); "
                        "check the file and its .db index") from exc
    return schema, count
