"""The progress display: a tqdm bar on a terminal, log lines otherwise."""
from __future__ import annotations

import logging
import sys
import time
from typing import Optional

from ms_suite.engine.callbacks.base import Callback, TrainState

log = logging.getLogger("ms_suite")


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
