"""Distributed setup for processes launched by ``msrun`` or an Ascend rank table.

Collectives: HCCL on Ascend, NCCL on GPU, MindSpore's own CPU collectives (``mccl``) on CPU.
Data parallel: replicas start from rank 0's parameters (:func:`broadcast_parameters`) and are
checked to end identical (:func:`replicas_in_sync`); each rank evaluates its eval shard and the
per-sample outputs are gathered (:func:`all_gather_arrays`). Semi-auto/auto parallel (Ascend/GPU):
weights are sliced across ranks, every rank reads the global batch and saves its own checkpoint
slice; with pipeline stages only the last stage computes the loss (:func:`last_stage_loss`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from ms_suite.config.schema import ParallelConfig
from ms_suite.errors import UserError
from ms_suite.runtime.auto_parallel import AUTO_MODES, check_device, configure_auto_parallel

log = logging.getLogger("ms_suite")


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    mode: str = "standalone"  # parallel.mode
    pipeline_stages: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def replicated(self) -> bool:
        """Every rank holds the whole model (data parallel), so all ranks' weights must agree."""
        return self.mode == "data_parallel" and self.world_size > 1

    @property
    def sliced(self) -> bool:
        """Semi-auto/auto parallel: each rank holds slices of the weights and saves its own checkpoint."""
        return self.mode in AUTO_MODES

    @property
    def data_shards(self) -> Tuple[int, int]:
        """(num_shards, shard_id) for the training data: one shard per rank in data parallel; in
        semi-auto/auto parallel every rank reads the whole global batch (full_batch) and MindSpore
        slices it by the layout."""
        return (1, 0) if self.sliced else (self.world_size, self.rank)

    @property
    def writes_checkpoints(self) -> bool:
        return self.is_main or self.sliced


def launch_device_id(cfg: ParallelConfig) -> Optional[int]:
    """The device a distributed rank must use: ``DEVICE_ID`` as exported by msrun (the local rank)
    or by a rank-table launcher. None for standalone runs (``runtime.device_id`` applies)."""
    if cfg.mode == "standalone" or "DEVICE_ID" not in os.environ:
        return None
    value = os.environ["DEVICE_ID"]
    if not value.isdigit():
        raise UserError(f"environment variable DEVICE_ID={value!r} is not a device index; "
                        "unset it or export the rank's device number (0, 1, ...)")
    return int(value)


def process_rank() -> int:
    """This process's global rank once the collectives are initialised (by :func:`init_distributed`), else 0."""
    from mindspore.communication import GlobalComm, get_rank

    return get_rank() if GlobalComm.INITED else 0


def init_distributed(cfg: ParallelConfig, strategy_dir: Optional[str] = None) -> DistInfo:
    """Initialise collectives and the parallel context; standalone is a no-op. In semi-auto/auto
    parallel each rank saves its sharding strategy as ``<strategy_dir>/rank_<r>.ckpt``."""
    if cfg.mode == "standalone":
        return DistInfo()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    auto = cfg.mode in AUTO_MODES  # model/pipeline parallel
    check_grad_reduce(cfg, ms.get_context("device_target"))
    if auto:
        check_device(cfg, ms.get_context("device_target"))  # before init(): a clear error on CPU
    try:
        init()
    except RuntimeError as err:
        raise UserError(f"parallel.mode={cfg.mode} needs a distributed launch (msrun or "
                        f"scripts/run_distribute_train.sh): {str(err).splitlines()[0]}") from None
    info = DistInfo(rank=get_rank(), world_size=get_group_size(), mode=cfg.mode,
                    pipeline_stages=cfg.pipeline_stage if auto else 1)
    if auto:
        configure_auto_parallel(cfg, info.rank, info.world_size, _strategy_file(strategy_dir, info.rank))
        return info
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=info.world_size)
    log.info("data parallel: rank %d of %d", info.rank, info.world_size)
    return info


def check_grad_reduce(cfg: ParallelConfig, device: str) -> None:
    """``grad_reduce_dtype`` / ``grad_buckets`` are for data parallel (standalone ignores them); CPU has no bfloat16."""
    changed = cfg.grad_reduce_dtype != "float32" or cfg.grad_buckets is not None
    if changed and cfg.mode in AUTO_MODES:
        raise UserError(f"parallel.grad_reduce_dtype / grad_buckets apply to parallel.mode=data_parallel (now "
                        f"{cfg.mode}); MindSpore's parallel pass inserts the reductions in this mode")
    if cfg.grad_reduce_dtype == "bfloat16" and device == "CPU":
        raise UserError("parallel.grad_reduce_dtype=bfloat16 needs Ascend or GPU: MindSpore 2.7.2's CPU AllReduce "
                        "takes float32 and float16; use float16 on CPU")


def _strategy_file(directory: Optional[str], rank: int) -> Optional[str]:
    if not directory:
        return None
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, f"rank_{rank}.ckpt")


def broadcast_parameters(params: Iterable) -> None:
    """Overwrite every parameter with rank 0's value.

    Ranks already start identical when they share the seed and the checkpoint; the broadcast makes
    that a guarantee (e.g. for a model hook that draws random numbers differently per rank).
    Parameters are packed into one flat buffer per dtype: one collective per dtype, and MindSpore
    2.7's CPU Broadcast kernel only transfers the first tensor of a tuple (the rest come back zero).
    """
    from mindspore import Tensor, ops

    by_dtype: Dict[str, List] = {}
    for param in params:
        by_dtype.setdefault(str(param.dtype), []).append(param)
    broadcast = ops.Broadcast(0)
    for group in by_dtype.values():
        values = [p.asnumpy() for p in group]
        flat = broadcast((Tensor(np.concatenate([v.ravel() for v in values])),))[0].asnumpy()
        offsets = np.cumsum([0] + [v.size for v in values])
        for param, value, start, end in zip(group, values, offsets[:-1], offsets[1:]):
            param.set_data(Tensor(flat[start:end].reshape(value.shape)))


def weights_digest(params: Iterable) -> bytes:
    """SHA-256 over the parameters' names and bytes: equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for param in sorted(params, key=lambda p: p.name):
        digest.update(param.name.encode())
        digest.update(param.asnumpy().tobytes())
    return digest.digest()


def replicas_in_sync(params: Iterable, dist: DistInfo) -> bool:
    """Whether every rank holds bit-identical ``params`` (all-gathers each rank's digest).

    Logs the ranks whose weights differ from rank 0's: with averaged gradients and the same
    optimizer they must not, so a difference points at a rank that skipped or repeated a step.
    """
    from mindspore import Tensor, ops

    digest = weights_digest(params)
    log.info("rank %d weights sha256 %s", dist.rank, digest.hex())
    gathered = ops.AllGather()(Tensor(np.frombuffer(digest, dtype=np.int32).copy())).asnumpy()
    per_rank = gathered.reshape(dist.world_size, -1)
    differ = [rank for rank in range(dist.world_size) if not np.array_equal(per_rank[rank], per_rank[0])]
    if differ:
        log.warning("the weights of rank(s) %s differ from rank 0's at the end of training",
                    ", ".join(map(str, differ)))
    return not differ


def all_gather_arrays(arrays: Dict[str, np.ndarray]) -> List[Dict[str, np.ndarray]]:
    """Every rank's ``arrays``, in rank order, bit for bit (any dtypes and shapes per rank).

    Each rank's dict travels as one ``.npz`` byte string: one AllGather of the lengths, then one of
    the bytes padded to the longest, as int32 words (a dtype MindSpore's CPU collectives carry).
    """
    from mindspore import Tensor, ops

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    payload = buffer.getvalue()
    lengths = ops.AllGather()(Tensor(np.array([len(payload)], np.int32))).asnumpy()
    words = -(-int(lengths.max()) // 4)
    padded = np.frombuffer(payload.ljust(4 * words, b"\0"), dtype=np.int32).copy()
    gathered = ops.AllGather()(Tensor(padded)).asnumpy().reshape(len(lengths), words)
    parts = []
    for row, length in zip(gathered, lengths):
        with np.load(io.BytesIO(row.tobytes()[:length]), allow_pickle=False) as npz:
            parts.append({key: npz[key] for key in npz.files})
    return parts


def last_stage_loss(loss: float, dist: DistInfo) -> float:
    """The training loss on every rank of a pipeline-parallel run.

    Only the last stage's ranks compute the loss; MindSpore's pipeline pass makes the other stages
    return zeros. Summing over all ranks and dividing by the ranks of one stage gives every rank
    (rank 0 logs) the last stage's value.
    """
    return float(_eager_all_reduce([loss])[0]) / (dist.world_size // dist.pipeline_stages)


def agree_on_step(step: int, directory: str) -> None:
    """``--resume auto`` with sliced weights: each rank picked its own newest slice; all must pick one step."""
    from mindspore.ops import ReduceOp

    newest, minus_oldest = _eager_all_reduce([step, -step], ReduceOp.MAX)
    if newest != -minus_oldest:
        raise UserError(f"--resume auto: the ranks' newest checkpoint slices differ (steps {int(-minus_oldest)} to "
                        f"{int(newest)}; one is missing or corrupt); pass --resume "
                        f"{os.path.join(directory, 'step_<N>.ckpt')} with a step every rank saved")


def _eager_all_reduce(values, op: str = "sum") -> np.ndarray:
    """AllReduce a few numbers outside any graph. A (semi-)auto-parallel context is switched to
    stand-alone around the op, as ``mindspore.parallel.sync_pipeline_shared_parameters`` does for
    its Send/Receive."""
    import mindspore as ms
    from mindspore import Tensor, ops

    mode, full_batch = ms.get_auto_parallel_context("parallel_mode"), ms.get_auto_parallel_context("full_batch")
    ms.set_auto_parallel_context(parallel_mode="stand_alone", full_batch=False)
    try:
        return ops.AllReduce(op)(Tensor(np.asarray(values, np.float32))).asnumpy()
    finally:
        ms.set_auto_parallel_context(parallel_mode=mode, full_batch=full_batch)
