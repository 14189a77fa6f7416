"""The process's own memory accounting."""
from __future__ import annotations

import gc
import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``'s ``ru_maxrss``:
    KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)


def release_compiled_graphs() -> None:
    """Free every graph MindSpore compiled in this process, with the memory it keeps for them
    (``mindspore.ms_memory_recycle``); a cell called again compiles anew. MindSpore otherwise keeps
    each graph's buffers for the life of the process, so a job that compiles graph after graph
    (tuning trials, the stages of a compression run) keeps growing."""
    import mindspore as ms

    gc.collect()
    ms.ms_memory_recycle()
