"""Data-parallel setup for processes launched by ``msrun`` (HCCL on Ascend, NCCL on GPU, CPU collectives)."""
from __future__ import annotations

import dataclasses
import logging

from ms_suite.config.schema import ParallelConfig
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(cfg: ParallelConfig) -> DistInfo:
    """Initialise collectives when ``parallel.mode`` is data_parallel; standalone is a no-op."""
    if cfg.mode == "standalone":
        return DistInfo()
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    try:
        init()
    except RuntimeError as err:
        raise UserError(f"parallel.mode={cfg.mode} needs a distributed launch (msrun or "
                        f"scripts/run_distribute_train.sh): {str(err).splitlines()[0]}") from None
    info = DistInfo(rank=get_rank(), world_size=get_group_size())
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=info.world_size)
    log.info("data parallel: rank %d of %d", info.rank, info.world_size)
    return info
