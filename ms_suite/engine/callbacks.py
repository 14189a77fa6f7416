"""Trainer callbacks: a small hook interface, the progress display and the distributed heartbeat.

Callbacks see a :class:`TrainState` and may set ``state.stop = True`` to end training early
(the hyper-parameter tuner's pruner does this).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger("ms_suite")


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
    trainer: Any = None            # the Trainer: net, step cell, cfg, run dir, dist, task
    timing: Any = None             # run-level Timing, set before on_train_end
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


def format_duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress(Callback):
    """A tqdm bar on a terminal; otherwise a line every ``every`` steps. Both show step, loss, lr,
    samples/s and the ETA of the whole run. Every line also goes to train.log."""

    def __init__(self, every: int = 10, enabled: bool = True, use_bar: Optional[bool] = None):
        self.every = every
        self.enabled = enabled
        self.use_bar = sys.stderr.isatty() if use_bar is None else use_bar
        self.bar = None
        self.start = 0.0
        self.start_step = 0

    def on_train_begin(self, state):
        self.start, self.start_step = time.perf_counter(), state.step

    def _eta(self, state: TrainState) -> float:
        done = state.step - self.start_step
        if done <= 1:
            return float("nan")
        rate = (time.perf_counter() - self.start) / done
        return rate * (state.total_steps - state.step)

    def line(self, state: TrainState) -> str:
        eta = self._eta(state)
        return (f"epoch {state.epoch + 1}/{state.epochs} step {state.step_in_epoch}/{state.steps_per_epoch} "
                f"loss {state.loss:.4f} lr {state.lr:.3g} {state.samples_per_s:.1f} samples/s "
                f"eta {format_duration(eta) if eta == eta else '-'}")

    def on_step_end(self, state):
        if not self.enabled:
            return
        if self.use_bar:
            self._bar(state)
        if state.step_in_epoch % self.every == 0 or state.step_in_epoch == state.steps_per_epoch:
            # On a terminal the bar is the display; the line still goes to the log file.
            extra = {"file_only": True} if self.use_bar else {}
            log.info(self.line(state), extra=extra)

    def _bar(self, state):
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=state.steps_per_epoch, initial=state.step_in_epoch - 1, leave=False,
                            desc=f"epoch {state.epoch + 1}/{state.epochs}", dynamic_ncols=True)
        self.bar.update(1)
        eta = self._eta(state)
        self.bar.set_postfix_str(f"loss {state.loss:.4f} lr {state.lr:.3g} "
                                 f"{state.samples_per_s:.1f} samples/s eta "
                                 f"{format_duration(eta) if eta == eta else '-'}")

    def on_epoch_end(self, state):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


HEARTBEAT_DIR = "heartbeat"  # in the run directory: one file per rank, ``rank_<r>``
TEST_MODE_ENV = "MS_SUITE_TEST_MODE"  # "1": the test suite runs this process; fault hooks are honoured
HANG_ENV = "MS_SUITE_TEST_HANG"  # "<rank>:<step>": that rank stops making progress after that step, once


def heartbeat_path(run_dir: str, rank: int) -> str:
    return os.path.join(run_dir, HEARTBEAT_DIR, f"rank_{rank}")


def read_heartbeat(path: str) -> Optional[int]:
    """The step a rank last reported, or None before its first report."""
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


class Heartbeat(Callback):
    """In distributed runs, each rank writes ``<step> <unix time>`` to ``heartbeat/rank_<r>`` in the
    run directory at train begin, after optimizer steps (at most once every ``every_s`` seconds: a
    shared file system need not take a write per step from every rank) and at every epoch end. The
    launcher's hang detection (``--hang-timeout``) watches these files."""

    def __init__(self, every_s: float = 1.0) -> None:
        self.path: Optional[str] = None
        self.every_s = every_s
        self.last = 0.0
        self.hang_at = _injected_hang()

    def on_train_begin(self, state: TrainState) -> None:
        dist = state.trainer.dist
        if dist.world_size > 1:
            self.path = heartbeat_path(state.trainer.run.path, dist.rank)
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._beat(state)

    def on_step_end(self, state: TrainState) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self._beat(state)
        if self.path and self.hang_at == (state.trainer.dist.rank, state.step):
            self._beat(state)  # the step it stopped after is the last progress it reported
            _hang_once(os.path.dirname(self.path))

    def on_epoch_end(self, state: TrainState) -> None:
        self._beat(state)

    def _beat(self, state: TrainState) -> None:
        if self.path:
            with open(self.path, "w") as fh:
                fh.write(f"{state.step} {time.time():.3f}\n")
            self.last = time.monotonic()


def _injected_hang() -> Optional[Tuple[int, int]]:
    """(rank, step) of a test-injected hang; only honoured when the test suite's test mode is on."""
    spec = os.environ.get(HANG_ENV, "")
    if os.environ.get(TEST_MODE_ENV) != "1" or not spec:
        return None
    rank, step = spec.split(":")
    return int(rank), int(step)


def _hang_once(folder: str) -> None:
    """Stop making progress forever (the launcher must detect it), unless this run already hung once."""
    marker = os.path.join(folder, "injected_hang")
    if os.path.exists(marker):
        return
    open(marker, "w").close()
    log.warning("test mode: hanging on purpose (%s)", os.environ[HANG_ENV])
    while True:
        time.sleep(1)
