"""Run a node's launch commands and watch its ranks: when one fails or hangs, stop them all, say
which, and (``--max-restarts``) relaunch the job from the newest checkpoint every rank can load.

msrun mode: msrun starts and joins the workers; its line ``Worker process <pid> exit with
exception`` and the workers' exit markers (:mod:`ms_suite.launch.worker`) tell which rank failed
first. msrun then waits for its scheduler to time out (about 30 s), so the supervisor ends the job
itself. Rank-table mode: the supervisor starts one process per device and polls them directly.

Hangs (``--hang-timeout``): every rank writes its step to ``heartbeat/rank_<r>`` in the run
directory (:class:`ms_suite.engine.callbacks.Heartbeat`). A rank whose file has not changed for the
timeout (counted from the launch) has hung: the supervisor sends ``SIGUSR1`` to every running rank,
on which the worker writes every thread's Python stack into its log, then stops the job.

Restarts: each failure is one line of ``restarts.jsonl`` in the run directory; a rank exiting with
code 2 (a user error: bad recipe, missing file) is never restarted; ``summary.json`` of a finished
job counts the restarts and the steps they lost.
"""
from __future__ import annotations

import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from ms_suite.engine.callbacks import heartbeat_path, read_heartbeat
from ms_suite.launch.commands import Process, ensure_python
from ms_suite.launch.worker import STACK_SIGNAL, read_markers

MSRUN_FAILED = re.compile(r"Worker process (\d+) exit with exception\. Error code: (-?\d+)")
POLL_S = 0.5
TAIL_LINES = 20
HUNG_TAIL_LINES = 40  # a stack dump of every thread is long
STACK_WAIT_S = 2.0  # time for a signalled rank to write its stacks before it is killed
MARKER_WINDOW = 8192
USER_ERROR_CODE = 2  # ms_suite.errors.UserError: restarting cannot help


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
    rank: Optional[int]  # None: the launcher itself failed
    how: str  # "exit code 3", "killed by SIGKILL", "no progress for 600 s after step 1200", ...
    exit_code: Optional[int] = None  # negative: killed by that signal; None: hung
    hung: bool = False

    @property
    def user_error(self) -> bool:
        return self.exit_code == USER_ERROR_CODE


class Heartbeats:
    """When each rank's heartbeat file last changed (this host's clock: nodes' clocks need not agree)."""

    def __init__(self, run_dir: str, ranks: Sequence[int]):
        self.paths = {rank: heartbeat_path(run_dir, rank) for rank in ranks}
        for path in self.paths.values():  # a previous attempt's steps are not this one's progress
            if os.path.exists(path):
                os.remove(path)
        start = time.monotonic()
        self.seen: Dict[int, Tuple[Optional[str], float]] = {rank: (None, start) for rank in ranks}

    def _content(self, rank: int) -> Optional[str]:
        try:
            with open(self.paths[rank]) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    def poll(self) -> None:
        now = time.monotonic()
        for rank, (content, _) in self.seen.items():
            current = self._content(rank)
            if current != content:
                self.seen[rank] = (current, now)

    def step(self, rank: int) -> Optional[int]:
        return read_heartbeat(self.paths[rank])

    def last_step(self) -> Optional[int]:
        steps = [s for s in map(self.step, self.paths) if s is not None]
        return max(steps) if steps else None

    def stalled(self, timeout: float) -> List[int]:
        """Ranks without progress for ``timeout`` s, longest-stalled first (lowest step on a tie)."""
        now = time.monotonic()
        late = [rank for rank, (_, since) in self.seen.items() if now - since > timeout]
        return sorted(late, key=lambda r: (self.seen[r][1], self.step(r) or -1))


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
                 console: TextIO = sys.stdout, heartbeats: Optional[Heartbeats] = None,
                 hang_timeout: Optional[float] = None):
        self.commands, self.ranks, self.msrun, self.console = list(commands), list(ranks), msrun, console
        self.heartbeats, self.hang_timeout = heartbeats, hang_timeout
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
                    return Failure(rank, describe_exit(code), code)
        if not self.msrun:
            for proc, rank in zip(self.procs, self.ranks):
                code = proc.poll()
                if code:
                    return Failure(rank.rank, describe_exit(code), code)
        failed = [Failure(rank, describe_exit(code), code) for rank, (_, code) in markers.items() if code]
        return failed[0] if failed else None

    def hang(self) -> Optional[Failure]:
        """With a hang timeout: the longest-stalled rank, after every running rank dumped its stacks (in a
        collective hang all ranks stall within seconds; their stacks show which one is stuck elsewhere)."""
        if self.heartbeats is None or self.hang_timeout is None:
            return None
        self.heartbeats.poll()
        markers = {r.rank: r.markers() for r in self.ranks}
        ended = {rank for rank, (_, code) in markers.items() if code is not None}  # exited ranks make no progress
        if not self.msrun:
            ended |= {rank.rank for proc, rank in zip(self.procs, self.ranks) if proc.poll() is not None}
        stalled = [rank for rank in self.heartbeats.stalled(self.hang_timeout) if rank not in ended]
        if not stalled:
            return None
        for rank, (pid, _) in markers.items():
            if pid and rank not in ended:
                try:
                    os.kill(pid, STACK_SIGNAL)
                except ProcessLookupError:
                    pass
        time.sleep(STACK_WAIT_S)
        step = self.heartbeats.step(stalled[0])
        after = "before its first step" if step is None else f"after step {step}"
        others = f"; also stalled: rank(s) {', '.join(map(str, stalled[1:]))}" if stalled[1:] else ""
        return Failure(stalled[0], f"no progress for {self.hang_timeout:g} s {after}, hung{others}", hung=True)

    def wait(self) -> Optional[Failure]:
        """Poll until every process ended (None) or a rank failed or hung (stop all, report, the failure)."""
        follow = None if self.msrun or not self.ranks else _Follower(self.ranks[0].path, self.console)
        while True:
            failure = self.failure() or self.hang()
            if follow:
                follow.pump()
            if failure:
                self.stop()
                self.report(failure)
                return failure
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
            return failure
        if any(codes):
            code = max(codes, key=abs)
            print(f"error: the launcher exited with {describe_exit(code)} and no rank reported "
                  f"a failure; see the output above and {os.path.dirname(self.ranks[0].path)}", file=sys.stderr)
            return Failure(None, f"the launcher exited with {describe_exit(code)}", code)
        return None

    def report(self, failure: Failure) -> None:
        """Name the failing rank, show its last log lines, list the others that exited with errors."""
        rank_log = next(r for r in self.ranks if r.rank == failure.rank)
        others = [r.rank for r in self.ranks if r.rank != failure.rank and (r.markers()[1] or 0) != 0]
        tail = rank_log.tail(HUNG_TAIL_LINES if failure.hung else TAIL_LINES)
        lines = [f"error: rank {failure.rank} failed ({failure.how}); stopped all ranks of this node.",
                 f"last lines of {rank_log.path}:"] + ["    " + line for line in tail]
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
    """Start ``commands`` once, supervise ``ranks``; Ctrl-C stops every rank. Returns the exit code."""
    return Supervisor(lambda _resume: commands, ranks, msrun).run()


@dataclasses.dataclass
class RestartPolicy:
    max_restarts: int = 0  # relaunches after a failure; 0: stop at the first one
    hang_timeout: Optional[float] = None  # seconds without a heartbeat that count as a hang; None: off
    run_dir: Optional[str] = None  # where heartbeats, checkpoints, restarts.jsonl and summary.json live
    node: int = 0


class Supervisor:
    """Run the job; on a failure or hang relaunch it (``launch(resume)`` gives the commands, ``resume``
    a checkpoint path or None) from the newest checkpoint every rank can load, up to ``max_restarts``
    times. Exit code: 0 finished, 2 a rank's user error, 1 any other failure, 130 interrupted."""

    def __init__(self, launch: Callable[[Optional[str]], Sequence[Process]], ranks: Sequence[RankLog], msrun: bool,
                 policy: Optional[RestartPolicy] = None):
        self.launch, self.ranks, self.msrun = launch, list(ranks), msrun
        self.policy = policy or RestartPolicy()
        self.records: List[dict] = []

    @property
    def restarts_file(self) -> str:
        name = "restarts.jsonl" if self.policy.node == 0 else f"restarts_node{self.policy.node}.jsonl"
        return os.path.join(self.policy.run_dir, name)

    def run(self) -> int:
        resume = None
        while True:
            failure, heartbeats = self._attempt(resume)
            if failure is None:
                self._count_in_summary()
                return 0
            if failure.exit_code == 130:
                return 130
            stop = self._stop_reason(failure)
            if stop:
                self._record(failure, heartbeats, None, "stop", stop)
                self._tell_story(stop)
                return USER_ERROR_CODE if failure.user_error else 1
            resume = self._restart(failure, heartbeats)

    def _attempt(self, resume: Optional[str]) -> Tuple[Optional[Failure], Optional[Heartbeats]]:
        ranks = [RankLog(r.rank, r.path) for r in self.ranks]  # fresh pids
        heartbeats = Heartbeats(self.policy.run_dir, [r.rank for r in ranks]) if self.policy.run_dir else None
        job = Job(self.launch(resume), ranks, self.msrun, heartbeats=heartbeats,
                  hang_timeout=self.policy.hang_timeout)
        job.start()
        try:
            return job.wait(), heartbeats
        except KeyboardInterrupt:
            job.stop()
            print("interrupted: stopped all ranks of this node", file=sys.stderr)
            return Failure(None, "interrupted", 130), heartbeats

    def _stop_reason(self, failure: Failure) -> Optional[str]:
        if failure.user_error:
            return (f"rank {failure.rank} exited with code {USER_ERROR_CODE}, a user error that a restart cannot "
                    "fix (see its error line above)")
        if len(self._restarts()) >= self.policy.max_restarts:
            return f"restart limit reached (--max-restarts {self.policy.max_restarts})"
        return None

    def _restarts(self) -> List[dict]:
        return [r for r in self.records if r["action"] == "restart"]

    def _restart(self, failure: Failure, heartbeats: Optional[Heartbeats]) -> Optional[str]:
        """Record the failure, keep the attempt's logs, and pick the checkpoint to resume from."""
        from ms_suite.checkpoint import resume_point

        point = resume_point(os.path.join(self.policy.run_dir, "checkpoints"))
        record = self._record(failure, heartbeats, point, "restart")
        where = f"step {point[0]} ({point[1]})" if point else "the start (no checkpoint every rank can load)"
        print(f"restart {len(self._restarts())} of {self.policy.max_restarts}: relaunching all ranks from {where}; "
              f"logs of the failed attempt: {record['logs']}", file=sys.stderr, flush=True)
        return point[1] if point else None

    def _record(self, failure: Failure, heartbeats: Optional[Heartbeats], point: Optional[Tuple[int, str]],
                action: str, reason: Optional[str] = None) -> dict:
        """Append one line to restarts.jsonl: ``action`` is "restart" or "stop" (then ``reason`` says why)."""
        last_step = heartbeats.last_step() if heartbeats else None
        resumed = point[0] if point else 0
        record = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "action": action,
                  "rank": failure.rank, "cause": failure.how, "exit_code": failure.exit_code, "hung": failure.hung,
                  "last_step": last_step,
                  "resumed_step": resumed if action == "restart" else None,
                  "resumed_from": point[1] if point else None,
                  "steps_lost": max(last_step - resumed, 0) if action == "restart" and last_step else 0,
                  "logs": self._archive_logs(len(self.records) + 1) if action == "restart" else None,
                  "stop_reason": reason}
        self.records.append(record)
        if self.policy.run_dir:
            with open(self.restarts_file, "a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    def _archive_logs(self, attempt: int) -> Optional[str]:
        """Move this node's rank logs (and on node 0 msrun's scheduler log) to ``logs/attempt_<k>/``: the
        next attempt writes fresh ones. Other nodes' logs in a shared folder are theirs to move."""
        if not self.ranks:
            return None
        log_dir = os.path.dirname(self.ranks[0].path)
        target = os.path.join(log_dir, f"attempt_{attempt}")
        os.makedirs(target, exist_ok=True)
        scheduler = glob.glob(os.path.join(log_dir, "scheduler*.log")) if self.policy.node == 0 else []
        for path in [r.path for r in self.ranks if os.path.exists(r.path)] + scheduler:
            shutil.move(path, os.path.join(target, os.path.basename(path)))
        return target

    def _tell_story(self, stop: str) -> None:
        if not self.records[:-1]:
            if self.policy.max_restarts or self.records[-1]["exit_code"] == USER_ERROR_CODE:
                print(f"not restarting: {stop}", file=sys.stderr)
            return  # no restarts asked for: the failure report above is the whole story
        lines = [f"giving up: {stop}. What happened:"]
        for number, record in enumerate(self.records, 1):
            resumed = (f"; restarted from step {record['resumed_step']}" if record["action"] == "restart" else "")
            who = "the launcher:" if record["rank"] is None else f"rank {record['rank']}"
            lines.append(f"  attempt {number}: {who} {record['cause']}{resumed}")
        lines.append(f"  details: {self.restarts_file}; logs of each attempt in logs/attempt_<k>/")
        print("\n".join(lines), file=sys.stderr)

    def _count_in_summary(self) -> None:
        """Add the restarts and the steps they lost to rank 0's summary.json (on the node that has it)."""
        path = os.path.join(self.policy.run_dir or "", "summary.json")
        if not self.policy.run_dir or not os.path.exists(path):
            return
        from ms_suite.engine.rundir import RunDir

        with open(path) as fh:
            summary = json.load(fh)
        restarts = self._restarts()
        summary.update(restarts=len(restarts), steps_lost=sum(r["steps_lost"] for r in restarts))
        RunDir(self.policy.run_dir).write_summary(summary)


def run_single(command: Process) -> int:
    """Run one command in the foreground (standalone train, eval)."""
    try:
        return subprocess.run(command.argv, env=command.full_env()).returncode
    except KeyboardInterrupt:
        return 130
