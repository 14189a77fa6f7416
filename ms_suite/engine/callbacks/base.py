"""The callback interface: hooks that see a :class:`TrainState` (progress of the run) whose
``context`` (:class:`RunContext`) holds what the run is made of. A callback may set
``state.stop = True`` to end training early (the hyper-parameter tuner's pruner does this).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

from mindspore import nn

from ms_suite.config import Config
from ms_suite.data import DatasetInfo
from ms_suite.engine.rundir import RunDir
from ms_suite.engine.tasks import Task
from ms_suite.runtime import DistInfo, RuntimeInfo


@dataclasses.dataclass
class RunContext:
    """What a run is made of, for callbacks: the recipe, where it writes, the device and ranks, the
    task, the data's shape, the network and its compiled training step."""

    cfg: Config
    run_dir: RunDir
    runtime: RuntimeInfo
    dist: DistInfo
    task: Task
    data_info: DatasetInfo
    net: nn.Cell           # the model being trained (what eval and export see)
    train_step: nn.Cell    # the compiled step: loss, gradients, optimizer (``optimizer`` attribute)
    global_batch: int      # samples per optimizer step over all ranks and micro-batches
    num_classes: int       # classes the network predicts


@dataclasses.dataclass
class Timing:
    """Step timing after the first (compiling) optimizer step."""

    data_s: float = 0.0
    compute_s: float = 0.0
    samples: int = 0
    first_step_s: float = 0.0
    time_to_first_step_s: float = 0.0

    @property
    def samples_per_s(self) -> float:
        total = self.data_s + self.compute_s
        return self.samples / total if total > 0 else 0.0

    @property
    def data_wait_share(self) -> float:
        total = self.data_s + self.compute_s
        return self.data_s / total if total > 0 else 0.0

    def compile_s(self, global_batch: int) -> float:
        """First-step time beyond an ordinary step: graph compilation and warm-up."""
        step_s = global_batch / self.samples_per_s if self.samples_per_s else 0.0
        return max(self.first_step_s - step_s, 0.0)


@dataclasses.dataclass
class TrainState:
    """What the trainer knows at a hook; callbacks read it and may set ``stop``."""

    epochs: int
    steps_per_epoch: int           # optimizer steps per epoch
    epoch: int = 0                 # 0-based epoch in progress
    step: int = 0                  # optimizer steps done in total
    step_in_epoch: int = 0         # optimizer steps done in this epoch
    loss: float = float("nan")
    lr: float = 0.0
    samples_per_s: float = 0.0
    metrics: Dict[str, float] = dataclasses.field(default_factory=dict)
    best_metric: Optional[float] = None  # best checkpoint.monitor value so far (saved in every checkpoint)
    data_s: float = 0.0            # last optimizer step: time waiting for data
    compute_s: float = 0.0         # last optimizer step: time in the compiled step
    stop: bool = False
    context: Optional[RunContext] = None  # what the run is made of
    timing: Optional[Timing] = None  # the run's step timing, set before on_train_end
    summary: Dict[str, Any] = dataclasses.field(default_factory=dict)  # merged into summary.json

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


class Callback:
    """Override any hook; all are no-ops by default."""

    def on_train_begin(self, state: TrainState) -> None: ...
    def on_step_end(self, state: TrainState) -> None: ...
    def on_epoch_end(self, state: TrainState) -> None: ...
    def on_train_end(self, state: TrainState) -> None: ...


class CallbackList(Callback):
    def __init__(self, callbacks: List[Callback]):
        self.callbacks = callbacks

    def _call(self, hook: str, state: TrainState) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(state)

    def on_train_begin(self, state): self._call("on_train_begin", state)
    def on_step_end(self, state): self._call("on_step_end", state)
    def on_epoch_end(self, state): self._call("on_epoch_end", state)
    def on_train_end(self, state): self._call("on_train_end", state)
