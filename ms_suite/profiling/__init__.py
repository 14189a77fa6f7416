"""Profiling and dashboards: MindInsight summaries, a profiler window, metrics.jsonl, MFU, plots.

The callbacks are wired from a recipe by ``ms_suite.cli.run.run_callbacks``; the MindInsight
server and plots are the ``insight`` and ``plot`` commands.
"""
from ms_suite.profiling.metrics_log import METRICS_FILE, MetricsLog, read_metrics
from ms_suite.profiling.mfu import MfuReport, Peak, cpu_peak, resolve_peak
from ms_suite.profiling.profile_window import PROFILER_DIR, ProfileWindow, layout_for_mindinsight
from ms_suite.profiling.summary import EventFile, SummaryCallback

__all__ = ["METRICS_FILE", "PROFILER_DIR", "EventFile", "MetricsLog", "MfuReport", "Peak", "ProfileWindow",
           "SummaryCallback", "cpu_peak", "layout_for_mindinsight", "read_metrics", "resolve_peak"]
