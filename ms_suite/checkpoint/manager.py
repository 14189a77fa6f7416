"""Checkpoints: atomic writes with metadata, keep-last-K plus best, and finding the newest valid one.

A write goes to a temporary name and is renamed when complete, so a final ``step_<N>.ckpt`` name
always holds a whole file. A write that fails (disk full, I/O error) removes its temporary file,
leaves every earlier checkpoint in place and raises :class:`CheckpointWriteError`.

A checkpoint holds every parameter of the training cell (weights, BN statistics, optimizer
moments, learning-rate position, loss scale, EMA) plus a JSON metadata string under
``ms_suite_meta`` (epoch, batches consumed, optimizer step, best metric, RNG states).

Semi-auto/auto parallel runs slice the weights across ranks: every rank saves its own slice to
``checkpoints/rank_<r>/`` (the layout ``mindspore.transform_checkpoints`` reads) and
:func:`merge_slices` assembles one whole checkpoint for eval and export.
"""
from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import mindspore as ms
from mindspore import nn

from ms_suite.errors import UserError
from ms_suite.checkpoint.format import META_KEY, read_checkpoint

log = logging.getLogger("ms_suite")

BEST_NAME = "best.ckpt"
_STEP_RE = re.compile(r"step_(\d+)\.ckpt$")
_RANK_RE = re.compile(r"rank_(\d+)")


class CheckpointWriteError(UserError):
    """A checkpoint could not be written (disk full, I/O error); earlier checkpoints are intact.
    Exit code 1: the environment failed, not the recipe (a launcher may retry)."""

    exit_code = 1


SaveObject = Union[nn.Cell, List[Dict[str, Any]], Dict[str, Any]]


def atomic_save(save_obj: SaveObject, path: str, meta: Dict[str, Any]) -> None:
    """Write to ``<name>.tmp.ckpt`` then rename, so a killed process never leaves a half file.
    (MindSpore appends ``.ckpt`` to names that lack it, hence the suffix order; it writes that name
    through its own ``<name>.tmp.tmp``.) A failed write removes both temporary files and raises
    :class:`CheckpointWriteError`.

    ``integrated_save=False``: each rank writes the parameters it holds (whole ones in standalone and
    data parallel, its slices in semi-auto/auto parallel, where gathering would need every rank)."""
    stem = path[: -len(".ckpt")]
    tmp = stem + ".tmp.ckpt"
    try:
        ms.save_checkpoint(save_obj, tmp, integrated_save=False, append_dict={META_KEY: json.dumps(meta)},
                           crc_check=True)
        os.replace(tmp, path)
    except OSError as err:
        for leftover in (tmp, stem + ".tmp.tmp"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(leftover)
        raise write_failed(f"writing checkpoint {path}", err, os.path.dirname(path)) from None


def write_failed(what: str, err: OSError, folder: str) -> CheckpointWriteError:
    return CheckpointWriteError(f"{what} failed: {err.strerror or err}; the earlier checkpoints in {folder} are "
                                "intact; free space or fix the folder, then continue with --resume auto")


def host_snapshot(cell: nn.Cell) -> Dict[str, Any]:
    """Copies of ``cell``'s parameter values in host memory, keyed by name: what a background write saves
    while training goes on changing the parameters."""
    return {param.name: param.asnumpy().copy() for param in cell.get_parameters()}


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
    """Saves ``step_<N>.ckpt`` files in ``directory``, keeps the newest ``keep_last`` and ``best.ckpt``.

    Pruning never removes the newest step that every rank saved (:func:`common_steps`): with sliced
    weights, a rank whose newer write failed still finds a step to resume from. With ``async_save``
    the parameters are copied to host memory and written by one background thread, one write at a
    time; the next :meth:`save` and :meth:`flush` raise a failed write's error."""

    def __init__(self, directory: str, keep_last: int = 3, keep_best: bool = True, async_save: bool = False):
        self.directory = directory
        self.keep_last = keep_last
        self.keep_best = keep_best
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ms_suite_ckpt") if async_save else None
        self._pending: List[Future] = []

    def save(self, cell: nn.Cell, step: int, meta: Dict[str, Any]) -> str:
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"step_{step:08d}.ckpt")
        if self._writer is None:
            atomic_save(cell, path, meta)
            self._prune()
        else:
            self.flush()  # one write in flight: memory stays bounded and errors surface in order
            snapshot = host_snapshot(cell)
            self._submit(lambda: (atomic_save(snapshot, path, meta), self._prune()))
        return path

    def mark_best(self, path: str) -> str:
        """Copy ``path`` to best.ckpt atomically (after its background write, if any)."""
        best = os.path.join(self.directory, BEST_NAME)

        def copy() -> None:
            try:
                shutil.copyfile(path, best + ".tmp")
                os.replace(best + ".tmp", best)  # plain copy: no MindSpore suffix rule applies
            except OSError as err:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(best + ".tmp")
                raise write_failed(f"copying {path} to {best}", err, self.directory) from None

        if self._writer:
            self._submit(copy)
        else:
            copy()
        return best

    def flush(self) -> None:
        """Wait for background writes; raise the first one's error."""
        pending, self._pending = self._pending, []
        for future in pending:
            future.result()

    def _submit(self, job: Callable[[], Any]) -> None:
        self._pending.append(self._writer.submit(job))

    def _prune(self) -> None:
        sliced = _RANK_RE.fullmatch(os.path.basename(self.directory))
        newest_everywhere = common_steps(os.path.dirname(self.directory) if sliced else self.directory)[:1]
        for old in step_checkpoints(self.directory)[self.keep_last:]:
            if _step_of(old) not in newest_everywhere:
                os.remove(old)


def _step_of(path: str) -> int:
    return int(_STEP_RE.search(path).group(1))


def step_checkpoints(directory: str) -> list:
    """``step_*.ckpt`` files in ``directory``, newest (highest step) first."""
    found = [p for p in glob.glob(os.path.join(directory, "step_*.ckpt")) if _STEP_RE.search(p)]
    return sorted(found, key=_step_of, reverse=True)


def latest_valid(directory: str) -> Optional[Tuple[str, Dict[str, Any], Dict[str, Any]]]:
    """The newest checkpoint in ``directory`` that loads. Unreadable newer ones are named in one
    warning line, whether an older one is then used or none is left (the run starts fresh)."""
    skipped = []
    for path in step_checkpoints(directory):
        try:
            params, meta = read_checkpoint(path)
        except UserError:
            skipped.append(os.path.basename(path))
            continue
        if skipped:
            log.warning("resume: skipping unreadable checkpoint(s) %s (corrupt or truncated); using %s",
                        ", ".join(skipped), os.path.basename(path))
        return path, params, meta
    if skipped:
        log.warning("resume: every checkpoint in %s is unreadable (corrupt or truncated): %s; starting fresh",
                    directory, ", ".join(skipped))
    return None


def common_steps(checkpoints: str) -> List[int]:
    """Steps saved under their final name by every rank that saves, newest first: the files in
    ``checkpoints`` (one writer) or, with sliced weights, in every ``checkpoints/rank_<r>/``."""
    ranks = _slice_ranks(checkpoints)
    folders = [rank_dir(checkpoints, r) for r in ranks] if ranks else [checkpoints]
    per_folder = [{_step_of(p) for p in step_checkpoints(folder)} for folder in folders]
    return sorted(set.intersection(*per_folder), reverse=True)


def resume_point(checkpoints: str) -> Optional[Tuple[int, str]]:
    """(step, path) of the newest checkpoint that loads on every rank that needs one; with sliced
    weights ``path`` is rank 0's slice (``--resume`` maps it to each rank's own). None: start fresh."""
    ranks = _slice_ranks(checkpoints)
    for step in common_steps(checkpoints):
        name = f"step_{step:08d}.ckpt"
        paths = [os.path.join(rank_dir(checkpoints, r), name) for r in ranks] or [os.path.join(checkpoints, name)]
        try:
            for path in paths:
                read_checkpoint(path)
        except UserError as err:
            log.warning("resume: skipping step %d: %s", step, str(err).split("; pick another")[0])
            continue
        return step, paths[0]
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
    common = common_steps(checkpoints)
    chosen = (common[0] if common else None) if step is None else step
    if chosen not in common:
        raise UserError(f"{checkpoints}: step {'(newest)' if step is None else step} was not saved by all "
                        f"{len(ranks)} ranks; steps every rank saved: {sorted(common) or 'none'}")
    return chosen
