"""Run a node's launch commands and watch its ranks: when one fails, stop them all and say which.

msrun mode: msrun starts and joins the workers; its line ``Worker process <pid> exit with
exception`` and the workers' exit markers (:mod:`ms_suite.launch.worker`) tell which rank failed
first. msrun then waits for its scheduler to time out (about 30 s), so the supervisor ends the job
itself. Rank-table mode: the supervisor starts one process per device and polls them directly.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence, TextIO, Tuple

from ms_suite.launch.commands import Process, ensure_python
from ms_suite.launch.worker import read_markers

MSRUN_FAILED = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)")
POLL_S = 0.5
TAIL_LINES = 20
MARKER_WINDOW = 8192


@dataclasses.dataclass
class RankLog:
    """A rank's log file; its marker lines say which process runs the rank and how it ended."""

    rank: int
    path: str
    pid: Optional[int] = None

    def _read(self, from_end: bool) -> str:
        """The first or last 8 KB (logs grow large; the markers are the first and last lines)."""
        try:
            with open(self.path, "rb") as fh:
                if from_end:
                    fh.seek(max(fh.seek(0, os.SEEK_END) - MARKER_WINDOW, 0))
                return fh.read(MARKER_WINDOW).decode(errors="replace")
        except FileNotFoundError:
            return ""

    def markers(self) -> Tuple[Optional[int], Optional[int]]:
        """(pid, exit code); None while the worker has not printed that marker."""
        if self.pid is None:
            self.pid = read_markers(self._read(from_end=False))[0]
        return self.pid, read_markers(self._read(from_end=True))[1]

    def tail(self, count: int = TAIL_LINES) -> List[str]:
        """The last ``count`` lines, without MindSpore's INFO chatter."""
        if not os.path.exists(self.path):
            return [f"(no log file {self.path})"]
        lines = [line for line in self._read(from_end=True).splitlines() if not line.startswith("[INFO]")]
        return lines[-count:]


@dataclasses.dataclass
class Failure:
    rank: int
    how: str  # "exit code 3", "killed by SIGKILL", ...


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class Job:
    """The processes of one node and the ranks they run."""

    def __init__(self, commands: Sequence[Process], ranks: Sequence[RankLog], msrun: bool,
                 console: TextIO = sys.stdout):
        self.commands, self.ranks, self.msrun, self.console = list(commands), list(ranks), msrun, console
        self.procs: List[subprocess.Popen] = []
        self.msrun_failed: Optional[Tuple[int, int]] = None  # (pid, exit code) msrun reported first
        self._files: List[TextIO] = []
        self._reader: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ start and stop
    def start(self) -> None:
        for cmd in self.commands:
            if cmd.path_prefix:
                ensure_python(cmd.path_prefix)
            if cmd.log:  # a rank-table rank: output to its log
                self._files.append(open(cmd.log, "w"))
                out = self._files[-1]
            else:  # msrun: read here, echoed by _read_msrun
                out = subprocess.PIPE
            # A session of its own: stop() can end the command and everything it started.
            self.procs.append(subprocess.Popen(cmd.argv, env=cmd.full_env(), start_new_session=True, stdout=out,
                                               stderr=subprocess.STDOUT, text=True))
        if self.msrun:
            self._reader = threading.Thread(target=self._read_msrun, args=(self.procs[0],), daemon=True)
            self._reader.start()

    def _read_msrun(self, proc: subprocess.Popen) -> None:
        """Echo msrun's output and note the first worker it reports as failed."""
        for line in proc.stdout:
            self.console.write(line)
            self.console.flush()
            found = MSRUN_FAILED.search(line)
            if found and self.msrun_failed is None:
                self.msrun_failed = int(found.group(1)), int(found.group(2))

    def stop(self) -> None:
        """SIGKILL every process this node started (msrun does the same to its workers)."""
        groups = {p.pid for p in self.procs if p.poll() is None}
        groups |= {pid for pid, _ in (r.markers() for r in self.ranks) if pid}
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for proc in self.procs:
            proc.wait()
        self._close()

    def _close(self) -> None:
        if self._reader:
            self._reader.join(timeout=5)
        for fh in self._files:
            fh.close()

    # ------------------------------------------------------------------ watching
    def failure(self) -> Optional[Failure]:
        """The first rank known to have failed, or None."""
        markers = {r.rank: r.markers() for r in self.ranks}
        if self.msrun_failed is not None:
            failed_pid, code = self.msrun_failed
            for rank, (pid, _) in markers.items():
                if pid == failed_pid:
                    return Failure(rank, describe_exit(code))
        if not self.msrun:
            for proc, rank in zip(self.procs, self.ranks):
                code = proc.poll()
                if code:
                    return Failure(rank.rank, describe_exit(code))
        failed = [Failure(rank, describe_exit(code)) for rank, (_, code) in markers.items() if code]
        return failed[0] if failed else None

    def wait(self) -> int:
        """Poll until every process ended (0) or a rank failed (stop all, report, 1)."""
        follow = None if self.msrun or not self.ranks else _Follower(self.ranks[0].path, self.console)
        while True:
            failure = self.failure()
            if follow:
                follow.pump()
            if failure:
                self.stop()
                self.report(failure)
                return 1
            codes = [p.poll() for p in self.procs]
            if None not in codes:
                break
            time.sleep(POLL_S)
        self._close()
        if follow:
            follow.pump()
        failure = self.failure()
        if failure:
            self.report(failure)
            return 1
        if any(codes):
            print(f"error: the launcher exited with {describe_exit(max(codes, key=abs))} and no rank reported "
                  f"a failure; see the output above and {os.path.dirname(self.ranks[0].path)}", file=sys.stderr)
            return 1
        return 0

    def report(self, failure: Failure) -> None:
        """Name the failing rank, show its last log lines, list the others that exited with errors."""
        rank_log = next(r for r in self.ranks if r.rank == failure.rank)
        others = [r.rank for r in self.ranks if r.rank != failure.rank and (r.markers()[1] or 0) != 0]
        lines = [f"error: rank {failure.rank} failed ({failure.how}); stopped all ranks of this node.",
                 f"last lines of {rank_log.path}:"] + ["    " + line for line in rank_log.tail()]
        if others:
            lines.append(f"rank(s) {', '.join(map(str, others))} also exited with errors; logs in "
                         f"{os.path.dirname(rank_log.path)}")
        print("\n".join(lines), file=sys.stderr)


class _Follower:
    """Copy what is appended to a log file to the console."""

    def __init__(self, path: str, console: TextIO):
        self.path, self.console, self.offset = path, console, 0

    def pump(self) -> None:
        try:
            with open(self.path, errors="replace") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
                self.offset = fh.tell()
        except FileNotFoundError:
            return
        if chunk:
            self.console.write(chunk)
            self.console.flush()


def run_job(commands: Sequence[Process], ranks: Sequence[RankLog], msrun: bool) -> int:
    """Start ``commands``, supervise ``ranks``; Ctrl-C stops every rank. Returns the exit code."""
    job = Job(commands, ranks, msrun)
    job.start()
    try:
        return job.wait()
    except KeyboardInterrupt:
        job.stop()
        print("interrupted: stopped all ranks of this node", file=sys.stderr)
        return 130


def run_single(command: Process) -> int:
    """Run one command in the foreground (standalone train, eval)."""
    try:
        return subprocess.run(command.argv, env=command.full_env()).returncode
    except KeyboardInterrupt:
        return 130
