"""Runtime: device choice, MindSpore context, seeds, compile cache, distributed setup."""
from ms_suite.runtime.device import RuntimeInfo, enable_compile_cache, init_runtime, seed_everything, select_device
from ms_suite.runtime.distributed import DistInfo, init_distributed

__all__ = ["DistInfo", "RuntimeInfo", "enable_compile_cache", "init_distributed", "init_runtime", "seed_everything",
           "select_device"]
