"""The base of the callbacks that record a run's curves (metrics.jsonl, MindInsight summaries)."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional

from ms_suite.engine.callbacks.base import Callback, TrainState


class StepWindow:
    """Averages over the optimizer steps since the last :meth:`read`.

    The first step a process runs compiles the graphs, so its time is left out of the rates
    (as the trainer's own ``samples_per_s`` does); its loss still counts.
    """

    def __init__(self) -> None:
        self.loss_sum = 0.0
        self.steps = 0
        self.timed_steps = 0
        self.data_s = 0.0
        self.compute_s = 0.0
        self.compiled = False

    def add(self, state: TrainState) -> None:
        self.loss_sum += state.loss
        self.steps += 1
        if self.compiled:
            self.timed_steps += 1
            self.data_s += state.data_s
            self.compute_s += state.compute_s
        self.compiled = True

    def read(self, global_batch: int) -> Dict[str, float]:
        """loss (mean), samples_per_s, data_ms and compute_ms (per step); then start a new window."""
        stats = {"loss": self.loss_sum / self.steps if self.steps else math.nan}
        if self.timed_steps:
            total = self.data_s + self.compute_s
            stats.update(samples_per_s=global_batch * self.timed_steps / total if total > 0 else 0.0,
                         data_ms=1000 * self.data_s / self.timed_steps,
                         compute_ms=1000 * self.compute_s / self.timed_steps)
        self.loss_sum, self.steps, self.timed_steps, self.data_s, self.compute_s = 0.0, 0, 0, 0.0, 0.0
        return stats


class EvalWatch:
    """Tells whether ``state.metrics`` holds an evaluation not yet seen (the trainer replaces the
    dict on every evaluation and keeps the old one in between)."""

    def __init__(self) -> None:
        self.seen: Optional[dict] = None

    def new_metrics(self, state: TrainState) -> Optional[Dict[str, float]]:
        if not state.metrics or state.metrics is self.seen:
            return None
        self.seen = state.metrics
        return {k: float(v) for k, v in state.metrics.items() if k != "samples"}


def due(state: TrainState, every: int) -> bool:
    """Every ``every`` optimizer steps, and at the end of each epoch."""
    return state.step % every == 0 or state.step_in_epoch == state.steps_per_epoch


class Recorder(Callback):
    """Records step averages every ``every`` optimizer steps (and at each epoch's end) and each new
    evaluation into a file that subclasses open (None: this rank records nothing)."""

    def __init__(self, every: int):
        self.every = every
        self.file: Any = None
        self.window = StepWindow()
        self.evals = EvalWatch()

    def open_file(self, state: TrainState) -> Any:
        raise NotImplementedError

    def write_steps(self, state: TrainState, stats: Dict[str, float]) -> None:
        raise NotImplementedError

    def write_eval(self, state: TrainState, metrics: Dict[str, float]) -> None:
        raise NotImplementedError

    def on_train_begin(self, state: TrainState) -> None:
        self.file = self.open_file(state)
        self.evals.seen = state.metrics  # a resumed run's restored metrics are not a new evaluation

    def on_step_end(self, state: TrainState) -> None:
        if self.file is None:
            return
        self.window.add(state)
        if due(state, self.every):
            self.write_steps(state, self.window.read(state.context.global_batch))

    def on_epoch_end(self, state: TrainState) -> None:
        self._record_eval(state)

    def on_train_end(self, state: TrainState) -> None:
        self._record_eval(state)
        if self.file is not None:
            self.file.close()
            self.file = None

    def _record_eval(self, state: TrainState) -> None:
        metrics = self.evals.new_metrics(state)
        if self.file is not None and metrics:
            self.write_eval(state, metrics)
