"""The distributed heartbeat: each rank's last step in a file the launcher's hang detection watches."""
from __future__ import annotations

import logging
import os
import time
from typing import Optional, Tuple

from ms_suite.engine.callbacks.base import Callback, TrainState

log = logging.getLogger("ms_suite")


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
        dist = state.context.dist
        if dist.world_size > 1:
            self.path = heartbeat_path(state.context.run_dir.path, dist.rank)
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._beat(state)

    def on_step_end(self, state: TrainState) -> None:
        if time.monotonic() - self.last >= self.every_s:
            self._beat(state)
        if self.path and self.hang_at == (state.context.dist.rank, state.step):
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
