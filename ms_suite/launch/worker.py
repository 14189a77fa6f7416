"""The frame around each rank's command: what msrun (or the rank-table launcher) starts on every rank is
``python -m ms_suite.cli.worker train ...``, which runs the ``ms-suite`` command line unchanged inside
:func:`run_framed`.

Two marker lines frame the command in the rank's log: the first names the rank, its pid and the
launch variables; the last gives the exit code. msrun only
reports a failed worker's pid, and a killed process prints nothing: the markers let the launcher
name the rank that failed. ``SIGUSR1`` makes the worker write every thread's Python stack into its
log (:mod:`faulthandler`): the launcher sends it to a rank that stopped making progress.
"""
from __future__ import annotations

import faulthandler
import os
import re
import signal
import socket
import sys
from typing import Callable, List, Optional, Tuple

MARK = "[ms-suite worker]"
STACK_SIGNAL = signal.SIGUSR1
LAUNCH_VARS = ("RANK_ID", "RANK_SIZE", "DEVICE_ID", "MS_ROLE", "MS_WORKER_NUM", "MS_NODE_RANK", "MS_SCHED_HOST",
               "MS_SCHED_PORT", "RANK_TABLE_FILE")
_START = re.compile(re.escape(MARK) + r" (rank \d+|scheduler|rank \?) pid (\d+)")
_EXIT = re.compile(re.escape(MARK) + r" .* exit code (-?\d+)")


def identity() -> str:
    """``rank N`` from the launch environment; msrun's scheduler process is ``scheduler``."""
    if os.environ.get("MS_ROLE") == "MS_SCHED":
        return "scheduler"
    return f"rank {os.environ.get('RANK_ID', '?')}"


def read_markers(log_text: str) -> Tuple[Optional[int], Optional[int]]:
    """(pid, exit code) from a worker log; None where the marker is missing."""
    start, end = _START.search(log_text), None
    for end in _EXIT.finditer(log_text):
        pass
    return (int(start.group(2)) if start else None), (int(end.group(1)) if end else None)


def run_framed(command: Callable[[List[str]], int], argv: List[str]) -> int:
    """``command(argv)`` between the start and exit markers, with stack dumps on :data:`STACK_SIGNAL`."""
    who = identity()
    faulthandler.register(STACK_SIGNAL, all_threads=True)
    launch_env = " ".join(f"{k}={os.environ[k]}" for k in LAUNCH_VARS if k in os.environ)
    print(f"{MARK} {who} pid {os.getpid()} on {socket.gethostname()}: {launch_env}", flush=True)
    code = 1
    try:
        code = command(argv)
    except SystemExit as exit_:  # argparse errors and --help
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        sys.stdout.flush()
        print(f"{MARK} {who} exit code {code}", flush=True)
    return code
