"""Trainer callbacks: the hook interface and typed run context, the progress display, the distributed
heartbeat, and the recipe-driven recorders (``metrics.jsonl``, MFU and the step split in
``summary.json``, MindInsight summaries, a profiler window). :func:`recipe_callbacks` is what every
training run gets from its recipe; the :class:`ms_suite.engine.trainer.Trainer` adds them itself."""
from __future__ import annotations

from typing import List

from ms_suite.config import Config
from ms_suite.engine.callbacks.base import Callback, CallbackList, RunContext, Timing, TrainState
from ms_suite.engine.callbacks.heartbeat import Heartbeat, heartbeat_path, read_heartbeat
from ms_suite.engine.callbacks.metrics_log import METRICS_FILE, MetricsLog, read_metrics
from ms_suite.engine.callbacks.mfu import MfuReport, Peak, cpu_peak, resolve_peak
from ms_suite.engine.callbacks.profile_window import PROFILER_DIR, ProfileWindow, layout_for_mindinsight
from ms_suite.engine.callbacks.progress import Progress, format_duration
from ms_suite.engine.callbacks.summary import EventFile, SummaryCallback

__all__ = ["METRICS_FILE", "PROFILER_DIR", "Callback", "CallbackList", "EventFile", "Heartbeat", "MetricsLog",
           "MfuReport", "Peak", "ProfileWindow", "Progress", "RunContext", "SummaryCallback", "Timing", "TrainState",
           "cpu_peak", "format_duration", "heartbeat_path", "layout_for_mindinsight", "read_heartbeat",
           "read_metrics", "recipe_callbacks", "resolve_peak"]


def recipe_callbacks(cfg: Config) -> List[Callback]:
    """What a recipe asks every training run for: metrics.jsonl, MFU and the step split in
    summary.json and (distributed) the heartbeat always; MindInsight summaries and a profiler window
    when ``summary.enabled`` / ``profile.enabled``."""
    callbacks: List[Callback] = [MetricsLog(cfg.train.log_every_steps), MfuReport(cfg.runtime.peak_tflops),
                                 Heartbeat()]
    if cfg.summary.enabled:
        callbacks.append(SummaryCallback(cfg.summary))
    if cfg.profile.enabled:
        callbacks.append(ProfileWindow(cfg.profile))
    return callbacks
