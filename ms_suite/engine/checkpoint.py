"""Checkpoints: atomic writes with metadata, keep-last-K plus best, and finding the newest valid one.

A checkpoint holds every parameter of the training cell (weights, BN statistics, optimizer
moments, learning-rate position, loss scale, EMA) plus a JSON metadata string under
``ms_suite_meta`` (epoch, batches consumed, optimizer step, best metric, RNG states).

Semi-auto/auto parallel runs slice the weights across ranks: every rank saves its own slice to
``checkpoints/rank_<r>/`` (the layout ``mindspore.transform_checkpoints`` reads) and
:func:`merge_slices` assembles one whole checkpoint for eval and export.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple, Union

import mindspore as ms
from mindspore import nn

from ms_suite.errors import UserError
from ms_suite.models.weights import META_KEY, read_checkpoint

log = logging.getLogger("ms_suite")

BEST_NAME = "best.ckpt"
_STEP_RE = re.compile(r"step_(\d+)\.ckpt$")
_RANK_RE = re.compile(r"rank_(\d+)")


def atomic_save(save_obj: Union[nn.Cell, List[Dict[str, Any]]], path: str, meta: Dict[str, Any]) -> None:
    """Write to ``<name>.tmp.ckpt`` then rename, so a killed process never leaves a half file.
    (MindSpore appends ``.ckpt`` to names that lack it, hence the suffix order.)

    ``integrated_save=False``: each rank writes the parameters it holds (whole ones in standalone and
    data parallel, its slices in semi-auto/auto parallel, where gathering would need every rank)."""
    tmp = path[: -len(".ckpt")] + ".tmp.ckpt"
    ms.save_checkpoint(save_obj, tmp, integrated_save=False, append_dict={META_KEY: json.dumps(meta)},
                       crc_check=True)
    os.replace(tmp, path)


def rank_dir(checkpoints: str, rank: int) -> str:
    """Where rank ``rank`` of a semi-auto/auto parallel run keeps its checkpoint slices."""
    return os.path.join(checkpoints, f"rank_{rank}")


def own_slice(path: str, rank: int) -> str:
    """``.../rank_<k>/step_N.ckpt`` -> the same step's file in ``.../rank_<rank>/``: with sliced
    weights every rank resumes from its own slice."""
    folder, name = os.path.split(os.path.abspath(path))
    if not _RANK_RE.fullmatch(os.path.basename(folder)):
        raise UserError(f"--resume {path}: a semi-auto/auto parallel run resumes each rank from its own slice; "
                        "pass --resume auto or a checkpoints/rank_<r>/step_<N>.ckpt path")
    return os.path.join(rank_dir(os.path.dirname(folder), rank), name)


class CheckpointManager:
    """Saves ``step_<N>.ckpt`` files in ``directory``, keeps the newest ``keep_last`` and ``best.ckpt``."""

    def __init__(self, directory: str, keep_last: int = 3, keep_best: bool = True):
        self.directory = directory
        self.keep_last = keep_last
        self.keep_best = keep_best

    def save(self, cell: nn.Cell, step: int, meta: Dict[str, Any]) -> str:
        os.makedirs(self.directory, exist_ok=True)
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
            log.warning("resume: skipping %s", str(err).split("; pick another")[0])
            continue
        return path, params, meta
    return None


def merge_slices(run_dir: str, output: str, step: Optional[int] = None) -> str:
    """Merge the per-rank checkpoint slices of a semi-auto/auto parallel run into one whole checkpoint.

    Uses the newest step every rank saved (or ``step``). The ranks' strategy files are merged with
    ``mindspore.merge_pipeline_strategys`` (one per pipeline stage is needed) and the slices
    assembled by ``mindspore.transform_checkpoints`` with no destination strategy (= unsliced).
    The ``ms_suite_meta`` entry is set aside first (transform_checkpoints reads every entry as a
    tensor) and rank 0's is written into ``output``. Returns ``output``.
    """
    if not output.endswith(".ckpt"):
        raise UserError(f"merge output {output} must end in .ckpt")
    checkpoints, strategies = os.path.join(run_dir, "checkpoints"), os.path.join(run_dir, "strategy")
    ranks = _slice_ranks(checkpoints)
    if not ranks or not glob.glob(os.path.join(strategies, "*.ckpt")):
        raise UserError(f"{run_dir} has no checkpoints/rank_<r>/ slices with strategy/*.ckpt files; "
                        "merge_slices is for runs trained with parallel.mode=semi_auto_parallel or auto_parallel")
    name = f"step_{_common_step(checkpoints, ranks, step):08d}.ckpt"
    meta: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=os.path.dirname(os.path.abspath(output))) as tmp:
        src, dst, strategy = (os.path.join(tmp, part) for part in ("src", "dst", "strategy.ckpt"))
        for rank in ranks:
            params, rank_meta = read_checkpoint(os.path.join(rank_dir(checkpoints, rank), name))
            meta = meta or rank_meta
            os.makedirs(rank_dir(src, rank))
            ms.save_checkpoint(params, os.path.join(rank_dir(src, rank), name))
        ms.merge_pipeline_strategys(strategies, strategy)
        ms.transform_checkpoints(src, dst, "merged", strategy, None)
        merged = ms.load_checkpoint(os.path.join(rank_dir(dst, 0), "merged0.ckpt"))
    atomic_save([{"name": key, "data": value} for key, value in merged.items()], output,
                {**meta, "merged_from": os.path.abspath(run_dir), "ranks": len(ranks)})
    log.info("merged %s of %d ranks of %s into %s", name, len(ranks), run_dir, output)
    return output


def _slice_ranks(checkpoints: str) -> List[int]:
    names = os.listdir(checkpoints) if os.path.isdir(checkpoints) else []
    return sorted(int(m.group(1)) for m in map(_RANK_RE.fullmatch, names) if m)


def _common_step(checkpoints: str, ranks: List[int], step: Optional[int]) -> int:
    """``step`` (default: the newest) if every rank saved it."""
    per_rank = [{int(_STEP_RE.search(p).group(1)) for p in step_checkpoints(rank_dir(checkpoints, r))} for r in ranks]
    common = set.intersection(*per_rank)
    chosen = max(common, default=None) if step is None else step
    if chosen not in common:
        raise UserError(f"{checkpoints}: step {'(newest)' if step is None else step} was not saved by all "
                        f"{len(ranks)} ranks; steps every rank saved: {sorted(common) or 'none'}")
    return chosen
