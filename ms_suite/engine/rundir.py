"""The run directory contract: config.yaml, train.log, checkpoints/, summary.json.

A run writes nothing into its directory until its inputs are validated (:meth:`RunDir.create`
after set-up; the log of the set-up is held back by :func:`deferred_log_file`), so a command that
fails validation leaves an existing run untouched and creates no half-made folder."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

log = logging.getLogger("ms_suite")


def default_output_dir(recipe_path: str) -> str:
    stem = os.path.splitext(os.path.basename(recipe_path))[0]
    return os.path.join("runs", f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")


class RunDir:
    """Paths of one run. Only the main rank writes config, summary and checkpoints."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def create(self) -> "RunDir":
        os.makedirs(self.path, exist_ok=True)
        return self

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, "checkpoints")

    @property
    def config_file(self) -> str:
        return os.path.join(self.path, "config.yaml")

    @property
    def log_file(self) -> str:
        return os.path.join(self.path, "train.log")

    @property
    def summary_file(self) -> str:
        return os.path.join(self.path, "summary.json")

    def write_summary(self, summary: Dict[str, Any]) -> None:
        self.create()
        tmp = self.summary_file + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(summary, fh, indent=2, sort_keys=False)
        os.replace(tmp, self.summary_file)


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


_FILE_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")


@contextlib.contextmanager
def log_to_file(path: str) -> Iterator[None]:
    """Copy the ``ms_suite`` log into ``path`` for the duration of the block (one run's train.log)."""
    with deferred_log_file() as start:
        start(path)
        yield


class _Held(logging.Handler):
    """Keeps records until they can be written."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def deferred_log_file() -> Iterator[Callable[[Optional[str]], None]]:
    """Hold the ``ms_suite`` log of the block back; the yielded ``start(path)`` writes what was held
    to ``path`` and copies the rest of the block's log there (``start(None)`` drops it). Records
    never started are dropped, so a run that fails before its directory exists writes nothing."""
    held, handlers = _Held(), []
    log.addHandler(held)

    def start(path: Optional[str]) -> None:
        log.removeHandler(held)
        if path is not None:
            handler = logging.FileHandler(path)
            handler.setFormatter(_FILE_FORMAT)
            for record in held.records:
                handler.handle(record)
            log.addHandler(handler)
            handlers.append(handler)
        held.records.clear()

    try:
        yield start
    finally:
        for handler in [held, *handlers]:
            log.removeHandler(handler)
            handler.close()


class _CurrentStderrHandler(logging.StreamHandler):
    """A console handler that writes to ``sys.stderr`` as it is when a record arrives, not as it was
    when the handler was made (in-process callers such as tests replace and close it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(verbose: bool = True) -> None:
    """The console (stderr) handler of the ``ms_suite`` logger, added once per process; runs add
    their train.log with :func:`log_to_file`."""
    log.setLevel(logging.INFO)
    log.propagate = False
    if not any(getattr(h, "_ms_suite_console", False) for h in log.handlers):
        console = _CurrentStderrHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console.addFilter(_ConsoleFilter())
        console.setLevel(logging.INFO if verbose else logging.WARNING)
        console._ms_suite_console = True  # type: ignore[attr-defined]
        log.addHandler(console)
