"""Runtime: device choice, MindSpore context, seeds, compile cache, distributed setup."""
from ms_suite.runtime.device import (RuntimeInfo, captured_native_output, compile_cache, init_runtime, seed_everything,
                                    select_device)
from ms_suite.runtime.distributed import (DistInfo, broadcast_parameters, init_distributed, launch_device_id,
                                          process_rank, replicas_in_sync)

__all__ = ["DistInfo", "RuntimeInfo", "broadcast_parameters", "captured_native_output", "compile_cache",
           "init_distributed", "init_runtime", "launch_device_id", "process_rank", "replicas_in_sync",
           "seed_everything", "select_device"]
