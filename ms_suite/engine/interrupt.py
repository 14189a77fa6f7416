"""Ctrl-C and SIGTERM stop training at a step boundary.

MindSpore 2.7.2 replaces the SIGINT handler whenever it runs a compiled graph with one that sends
the process SIGTERM, so Python's handler never runs and the process dies with exit 143, possibly
mid-way through writing a checkpoint. :func:`hold_stop_signals`, called before MindSpore starts its
threads, blocks both signals in every thread; the trainer collects a pending one with
:func:`pending_stop_signal` after each step, saves a checkpoint and raises :class:`Interrupted`.
"""
from __future__ import annotations

import signal
from typing import Optional

STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class Interrupted(KeyboardInterrupt):
    """Training stopped on a signal; ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, signo: int, message: str):
        super().__init__(message)
        self.exit_code = 128 + signo


def hold_stop_signals() -> None:
    """Block SIGINT and SIGTERM in this thread and in every thread it starts from now on."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """Undo :func:`hold_stop_signals` for this thread; a pending signal is delivered now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def pending_stop_signal() -> Optional[int]:
    """The SIGINT/SIGTERM received while held (taken off the queue), or None; None when not held."""
    if not STOP_SIGNALS <= signal.pthread_sigmask(signal.SIG_BLOCK, set()):
        return None
    info = signal.sigtimedwait(STOP_SIGNALS, 0)
    return info.si_signo if info is not None else None
