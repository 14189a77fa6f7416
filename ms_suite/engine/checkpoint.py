"""Checkpoints: atomic writes with metadata, keep-last-K plus best, and finding the newest valid one.

A checkpoint holds every parameter of the training cell (weights, BN statistics, optimizer
moments, learning-rate position, loss scale, EMA) plus a JSON metadata string under
``ms_suite_meta`` (epoch, batches consumed, optimizer step, best metric, RNG states).
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
from typing import Any, Dict, Optional, Tuple

import mindspore as ms
from mindspore import nn

from ms_suite.errors import UserError
from ms_suite.models.weights import META_KEY, read_checkpoint

log = logging.getLogger("ms_suite")

BEST_NAME = "best.ckpt"
_STEP_RE = re.compile(r"step_(\d+)\.ckpt$")


def atomic_save(cell: nn.Cell, path: str, meta: Dict[str, Any]) -> None:
    """Write to ``<name>.tmp.ckpt`` then rename, so a killed process never leaves a half file.
    (MindSpore appends ``.ckpt`` to names that lack it, hence the suffix order.)"""
    tmp = path[: -len(".ckpt")] + ".tmp.ckpt"
    ms.save_checkpoint(cell, tmp, append_dict={META_KEY: json.dumps(meta)}, crc_check=True)
    os.replace(tmp, path)


class CheckpointManager:
    """Saves ``step_<N>.ckpt`` files in ``directory``, keeps the newest ``keep_last`` and ``best.ckpt``."""

    def __init__(self, directory: str, keep_last: int = 3, keep_best: bool = True):
        self.directory = directory
        self.keep_last = keep_last
        self.keep_best = keep_best
        os.makedirs(directory, exist_ok=True)

    def save(self, cell: nn.Cell, step: int, meta: Dict[str, Any]) -> str:
        path = os.path.join(self.directory, f"step_{step:08d}.ckpt")
        atomic_save(cell, path, meta)
        self._prune()
        return path

    def mark_best(self, path: str) -> str:
        """Copy ``path`` to best.ckpt atomically."""
        best = os.path.join(self.directory, BEST_NAME)
        shutil.copyfile(path, best + ".tmp")
        os.replace(best + ".tmp", best)  # plain copy: no MindSpore suffix rule applies
        return best

    def _prune(self) -> None:
        for old in step_checkpoints(self.directory)[self.keep_last:]:
            os.remove(old)


def step_checkpoints(directory: str) -> list:
    """``step_*.ckpt`` files in ``directory``, newest (highest step) first."""
    found = [p for p in glob.glob(os.path.join(directory, "step_*.ckpt")) if _STEP_RE.search(p)]
    return sorted(found, key=lambda p: int(_STEP_RE.search(p).group(1)), reverse=True)


def latest_valid(directory: str) -> Optional[Tuple[str, Dict[str, Any], Dict[str, Any]]]:
    """The newest checkpoint in ``directory`` that loads; corrupt ones are skipped with a warning."""
    for path in step_checkpoints(directory):
        try:
            params, meta = read_checkpoint(path)
        except UserError as err:
            log.warning("skipping %s", err)
            continue
        return path, params, meta
    return None

