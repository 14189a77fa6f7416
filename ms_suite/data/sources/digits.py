"""scikit-learn's 8x8 digits, embedded: the quickstart's data (no download)."""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import zipfile
from typing import Dict, Tuple

import numpy as np

from ms_suite.config.schema import DataConfig
from ms_suite.data import transforms
from ms_suite.data.source import Source, generator_dataset
from ms_suite.registry import DATASETS
from ms_suite.runtime.device import default_cache_dir

log = logging.getLogger("ms_suite")


@functools.lru_cache(maxsize=4)
def digits_arrays(val_split: float) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """sklearn's 8x8 digits on the 0-255 scale, zero-padded by 1 pixel, split stratified.

    The split is kept in the suite's cache folder (``$MS_SUITE_CACHE``), keyed by ``val_split`` and
    scikit-learn's version: importing scikit-learn takes longer than the rest of the suite's own
    start-up, and a launch that finds the file does not import it."""
    path = _digits_cache_file(val_split)
    try:
        with np.load(path) as saved:
            return {split: (saved[f"{split}_x"], saved[f"{split}_y"]) for split in ("train", "eval")}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):  # none yet, or unreadable
        arrays = _split_digits(val_split)
    _save_quietly(path, {f"{split}_{k}": a for split, pair in arrays.items() for k, a in zip("xy", pair)})
    return arrays


def _digits_cache_file(val_split: float) -> str:
    from importlib.metadata import version

    return os.path.join(default_cache_dir(), "data", f"digits_split{val_split!r}_sklearn{version('scikit-learn')}.npz")


def _split_digits(val_split: float) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = np.pad(x.reshape(-1, 1, 8, 8) * (255.0 / 16.0), ((0, 0), (0, 0), (1, 1), (1, 1)))
    xt, xe, yt, ye = train_test_split(x.astype(np.float32), y.astype(np.int32), test_size=val_split,
                                      stratify=y, random_state=0)
    return {"train": (xt, yt), "eval": (xe, ye)}


def _save_quietly(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically; a folder that cannot be written only costs the cache."""
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as err:
        log.debug("digits split not cached at %s: %s", path, err)
        with contextlib.suppress(OSError):
            os.remove(tmp)


@DATASETS.register("digits")
class Digits(Source):
    """Embedded scikit-learn digits, normalised and shift-augmented in numpy."""

    num_classes, input_shape = 10, (1, 8, 8)

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        arrays = digits_arrays(cfg.val_split)
        train = arrays["train"][0][:, :, 1:-1, 1:-1]
        mean, std = transforms.mean_std(cfg, [float(train.mean())], [float(train.std())])
        self.data = {s: ((x - mean[0]) / std[0], y) for s, (x, y) in arrays.items()}
        self.num_samples = {s: len(y) for s, (_, y) in arrays.items()}

    def leaf(self, split, sampler, seed, epoch):
        images, labels = self.data[split]
        if split == "train" and self.cfg.augment:
            shifts = transforms.random_shifts(seed, epoch, len(labels))
        else:
            shifts = np.ones((len(labels), 2), dtype=np.int64)

        def row(i: int) -> tuple:
            dy, dx = shifts[i]
            return images[i, :, dy:dy + 8, dx:dx + 8], labels[i]

        return generator_dataset(len(labels), row, sampler, self.cfg.num_workers)
