"""MindInsight summaries: loss, lr, throughput, eval metrics, optional weight histograms, the graph.

The run directory is the MindInsight "train job": ``ms-suite insight start --runs runs/`` lists
every ``runs/<run>``. (MindInsight looks for summary files only in the base folder and its
direct children, so a ``runs/<run>/summary/`` subfolder would not be found.)
"""
from __future__ import annotations

import logging
import os
import platform
import time
from typing import Dict, Optional

import numpy as np

from ms_suite.config.schema import SummaryConfig
from ms_suite.engine.callbacks.base import TrainState
from ms_suite.engine.callbacks.recording import Recorder

log = logging.getLogger("ms_suite")


class EventFile:
    """One summary file, ``events.out.events.summary.<time>.<rank>.<host>_MS``, written in-process.

    It uses the protobuf packing and C++ record writer behind ``mindspore.SummaryRecord``, but not
    SummaryRecord itself: SummaryRecord hands records to a writer process that polls its queue
    without sleeping, which keeps a CPU core busy for the whole run (measured in
    docs/results/profiling.md). Written directly, records cost nothing in between.
    """

    def __init__(self, directory: str, rank: int = 0):
        from mindspore.train.summary.writer import SummaryWriter

        os.makedirs(directory, exist_ok=True)
        name = f"events.out.events.summary.{int(time.time())}.{rank}.{platform.node()}_MS"
        self.path = os.path.join(directory, name)
        self._writer = SummaryWriter(self.path)

    def add(self, step: int, scalars: Optional[Dict[str, float]] = None,
            histograms: Optional[Dict[str, np.ndarray]] = None) -> None:
        from mindspore.train.summary._summary_adapter import package_summary_event

        values = [{"_type": "Scalar", "name": tag, "data": np.asarray(value, np.float32)}
                  for tag, value in (scalars or {}).items()]
        values += [{"_type": "Histogram", "name": tag, "data": array} for tag, array in (histograms or {}).items()]
        if values:
            self._writer.write("summary", package_summary_event(values, step, time.time()).SerializeToString())

    def add_graph(self, model_proto: bytes) -> None:
        from mindspore.train.summary._summary_adapter import package_graph_event

        self._writer.write("graph", package_graph_event(model_proto).SerializeToString())

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def compiled_graph(cell) -> Optional[bytes]:
    """The optimized graph of a cell compiled in graph mode, as MindInsight's graph page reads it."""
    from mindspore.common.api import _cell_graph_executor

    try:
        proto = _cell_graph_executor.get_optimize_graph_proto(cell)
    except (AttributeError, RuntimeError):  # never compiled (PyNative mode)
        return None
    return proto or None


class SummaryCallback(Recorder):
    """Writes MindInsight summaries into the run directory (rank 0; every rank with ``all_ranks``,
    rank k > 0 under ``<run>/rank_<k>/``)."""

    def __init__(self, cfg: SummaryConfig):
        super().__init__(cfg.every_n_steps)
        self.cfg = cfg
        self.graph_written = False

    def open_file(self, state: TrainState) -> Optional[EventFile]:
        context = state.context
        rank = context.dist.rank
        if rank != 0 and not self.cfg.all_ranks:
            return None
        events = EventFile(context.run_dir.path if rank == 0 else os.path.join(context.run_dir.path, f"rank_{rank}"), rank)
        log.info("MindInsight summaries: %s", events.path)
        return events

    def on_step_end(self, state: TrainState) -> None:
        if self.file is not None and not self.graph_written:
            self._write_graph(state.context.train_step)
        super().on_step_end(state)

    def write_steps(self, state: TrainState, stats: Dict[str, float]) -> None:
        params = state.context.net.trainable_params() if self.cfg.histograms else []
        self.file.add(state.step, scalars={"lr": state.lr, **stats}, histograms={p.name: p.asnumpy() for p in params})
        self.file.flush()  # a MindInsight already running shows the run live

    def write_eval(self, state: TrainState, metrics: Dict[str, float]) -> None:
        self.file.add(state.step, scalars={f"eval/{k}": v for k, v in metrics.items()})
        self.file.flush()

    def _write_graph(self, cell) -> None:
        self.graph_written = True
        proto = compiled_graph(cell)
        if proto is None:
            log.info("summary: no compiled graph to record (PyNative mode)")
        else:
            self.file.add_graph(proto)
