"""Reading what runs recorded: the MindInsight dashboard (``ms-suite insight``, run from its own
environment) and learning-curve plots (``ms-suite plot``). The recorders themselves are trainer
callbacks (:mod:`ms_suite.engine.callbacks`), which every run gets from its recipe."""
from ms_suite.profiling.plot import plot_runs

__all__ = ["plot_runs"]
