"""Profile a window of training steps and lay the result out for MindInsight.

Layout of ``<run>/profiler/`` (the folder MindInsight's profiler pages open)::

    profiler_info_<rank>.json             what MindInsight reads to list the devices (ranks)
    cpu_op_type_info_<rank>.csv, ...      operator statistics (cpu_op_* / gpu_op_* / ascend_* files)
    rank_<rank>/<host>_<pid>_<time>_ascend_ms/
        ASCEND_PROFILER_OUTPUT/trace_view.json   Chrome trace: Perfetto, chrome://tracing, MindStudio Insight
        FRAMEWORK/...                     MindSpore 2.7's own output, untouched

MindSpore 2.7 writes only the ``rank_<rank>/`` part; the files MindInsight 2.3.1 knows are copied
next to it (renamed to the rank), with a ``profiler_info_<rank>.json`` describing the run.

On GPU, MindSpore 2.7.2 still creates the ``*_ascend_ms`` folder (host-side data), but its GPU
profiler (``mindspore/profiler/platform/gpu_profiler.py``) is initialised with the handler's own
folder, so the ``gpu_*`` operator files land directly in ``rank_<rank>/``: both places are read.
"""
from __future__ import annotations

import glob
import json
import logging
import os
import re
import shutil
from typing import Any, Dict, List, Optional, Tuple

from ms_suite.config.schema import ProfileConfig
from ms_suite.engine.callbacks.base import Callback, TrainState
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")

PROFILER_DIR = "profiler"
# Files MindInsight 2.3.1 reads from a profiler folder, by name prefix; the device (rank) number
# follows the prefix: cpu_op_type_info_0.csv, aicore_intermediate_0_type.csv, ...
MINDINSIGHT_FILES = ("cpu_op_type_info", "cpu_op_detail_info",
                     "gpu_op_type_info", "gpu_op_detail_info", "gpu_activity_data",
                     "ascend_timeline_display", "output_op_compute_time", "aicore_intermediate",
                     "aicpu_intermediate", "step_trace_raw")
_MINDINSIGHT_NAME = re.compile(rf"^({'|'.join(MINDINSIGHT_FILES)})_\d+(.*)$")


def check_window(cfg: ProfileConfig) -> None:
    if cfg.stop_step < cfg.start_step:
        raise UserError(f"profile.stop_step={cfg.stop_step} is before profile.start_step={cfg.start_step}; "
                        f"set stop_step >= start_step (both are 1-based optimizer steps, inclusive)")


def plan_window(cfg: ProfileConfig, steps_done: int, total_steps: int) -> Optional[Tuple[int, int]]:
    """The (first, last) steps to profile in a run that resumes after ``steps_done`` steps, or None."""
    first, last = max(cfg.start_step, steps_done + 1), min(cfg.stop_step, total_steps)
    return (first, last) if first <= last else None


def profile_files(raw_dir: str) -> List[str]:
    """The files of the newest profile under ``raw_dir``: everything in MindSpore's newest
    ``*_ascend_ms`` folder, and the files directly in ``raw_dir`` (where the GPU profiler writes)."""
    output = _newest_output(raw_dir)
    nested = glob.glob(os.path.join(output, "**", "*"), recursive=True) if output else []
    return sorted(p for p in nested + glob.glob(os.path.join(raw_dir, "*")) if os.path.isfile(p))


def layout_for_mindinsight(files: List[str], profiler_dir: str, rank: int, info: Dict[str, Any]) -> List[str]:
    """Copy the ``files`` MindInsight reads (see :func:`profile_files`) into ``profiler_dir``
    (renamed to ``rank``) and write ``profiler_info_<rank>.json``. Returns the copied file names;
    none means MindInsight cannot show this device's profile."""
    copied = []
    for path in files:
        match = _MINDINSIGHT_NAME.match(os.path.basename(path))
        if match:
            name = f"{match.group(1)}_{rank}{match.group(2)}"
            shutil.copyfile(path, os.path.join(profiler_dir, name))
            copied.append(name)
    if copied:
        with open(os.path.join(profiler_dir, f"profiler_info_{rank}.json"), "w") as fh:
            json.dump(info, fh, indent=2)
    return copied


class ProfileWindow(Callback):
    """Runs MindSpore's profiler over optimizer steps ``start_step..stop_step`` (1-based,
    inclusive) on every rank. Without this callback no profiler object exists."""

    def __init__(self, cfg: ProfileConfig):
        check_window(cfg)
        self.cfg = cfg
        self.prof = None
        self.window: Optional[Tuple[int, int]] = None
        self.raw_dir = ""

    def on_train_begin(self, state: TrainState) -> None:
        self.window = plan_window(self.cfg, state.step, state.total_steps)
        if self.window is None:
            log.warning("profile window %d-%d lies outside this run's steps %d-%d: not profiling",
                        self.cfg.start_step, self.cfg.stop_step, state.step + 1, state.total_steps)
            return
        from mindspore.profiler import profile, schedule, tensorboard_trace_handler

        context = state.context
        first, last = self.window
        self.raw_dir = os.path.join(context.run_dir.path, PROFILER_DIR, f"rank_{context.dist.rank}")
        # Step k of this process runs under schedule action k-1: skip the steps before the window.
        self.prof = profile(activities=_activities(context.runtime.device),
                            schedule=schedule(wait=0, warmup=0, active=last - first + 1, repeat=1,
                                              skip_first=first - state.step - 1),
                            on_trace_ready=tensorboard_trace_handler(self.raw_dir))
        log.info("profiling steps %d-%d into %s", first, last, self.raw_dir)

    def on_step_end(self, state: TrainState) -> None:
        if self.prof is None:
            return
        self.prof.step()  # after the window's last step this stops the profiler and writes its output
        if state.step == self.window[1]:
            self._finish(state)

    def on_train_end(self, state: TrainState) -> None:
        if self.prof is not None:  # training stopped inside the window: keep what was recorded
            self.prof.stop()
            self._finish(state)

    def _finish(self, state: TrainState) -> None:
        import mindspore as ms

        self.prof = None
        context = state.context
        profiler_dir = os.path.dirname(self.raw_dir)
        info = {"ms_version": ms.__version__, "device_target": context.runtime.device,
                "context_mode": context.runtime.mode, "is_heterogeneous": False,
                "rank_id": context.dist.rank, "rank_size": context.dist.world_size,
                "parallel_mode": context.cfg.parallel.mode, "stage_num": context.cfg.parallel.pipeline_stage,
                "profile_steps": list(self.window)}
        output = _newest_output(self.raw_dir)
        copied = layout_for_mindinsight(profile_files(self.raw_dir), profiler_dir, context.dist.rank, info)
        trace = os.path.join(output, "ASCEND_PROFILER_OUTPUT", "trace_view.json") if output else ""
        trace = trace if os.path.isfile(trace) else None
        if not copied:
            log.warning("profile: MindInsight 2.3.1 reads none of the files MindSpore wrote for %s; open %s "
                        "in MindStudio Insight", context.runtime.device, output or self.raw_dir)
        state.summary.update(profile_steps=list(self.window), profile_dir=profiler_dir, profile_trace=trace)
        log.info("profile of steps %d-%d: %s%s", *self.window, profiler_dir, f" (trace {trace})" if trace else "")


def _newest_output(raw_dir: str) -> Optional[str]:
    """MindSpore's newest ``<host>_<pid>_<time>_ascend_ms`` folder under ``raw_dir`` (a resumed run
    may have profiled before)."""
    outputs = glob.glob(os.path.join(raw_dir, "*_ascend_ms"))
    return max(outputs, key=os.path.getmtime) if outputs else None


def _activities(device: str) -> list:
    from mindspore.profiler import ProfilerActivity

    extra = {"Ascend": [ProfilerActivity.NPU], "GPU": [ProfilerActivity.GPU]}.get(device, [])
    return [ProfilerActivity.CPU] + extra
