"""The exact commands a launch runs on this node: msrun (every device), one process per device
(Ascend rank table), or a single process (standalone train, eval).

Every rank runs ``python -m ms_suite.cli.worker train ...`` with the same ``--output-dir`` and
``--set parallel.mode=data_parallel`` (or the recipe's semi_auto/auto_parallel mode). The worker
names its rank and pid in its log, so a failure can be traced to a rank (see
:mod:`ms_suite.launch.supervisor`).
"""
from __future__ import annotations

import dataclasses
import datetime
import errno
import importlib.metadata
import os
import shlex
import shutil
import socket
import sys
from typing import Dict, List, Optional, Sequence

from ms_suite.errors import UserError
from ms_suite.launch.rank_table import RankTable, logical_device_id

WORKER = ["-m", "ms_suite.cli.worker"]
ENV_PREFIXES = ("MS_", "RANK_", "DEVICE_", "HCCL_", "NCCL_", "ASCEND_", "CUDA_", "GLOG_", "OMP_", "MINDSPORE_")
ENV_NAMES = ("PATH", "LD_LIBRARY_PATH", "PYTHONPATH", "HOSTNAME")


@dataclasses.dataclass
class Process:
    """One command to start on this node."""

    argv: List[str]
    env: Dict[str, str] = dataclasses.field(default_factory=dict)  # set on top of the launcher's environment
    path_prefix: Optional[str] = None  # folder put first on PATH (msrun runs `python` from PATH)
    log: Optional[str] = None  # stdout+stderr file; None: the console
    rank: Optional[int] = None

    def full_env(self) -> Dict[str, str]:
        env = {**os.environ, **self.env}
        if self.path_prefix:
            env["PATH"] = self.path_prefix + os.pathsep + env.get("PATH", "")
        return env

    def shell(self) -> str:
        """The command as one shell line (environment assignments, argv, redirection)."""
        words = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        if self.path_prefix:
            words.insert(0, f'PATH={shlex.quote(self.path_prefix)}:"$PATH"')
        words.append(shlex.join(self.argv))
        if self.log:
            words.append(f"> {shlex.quote(self.log)} 2>&1")
        return " ".join(words)


@dataclasses.dataclass
class Cluster:
    """Where the ranks run: ``num_devices`` ranks in all, spread evenly over ``nodes``."""

    num_devices: int
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 8118
    bind_core: bool = False

    def __post_init__(self) -> None:
        if self.num_devices < 1 or self.nodes < 1:
            raise UserError(f"-n {self.num_devices} / --nodes {self.nodes}: both must be at least 1")
        if self.num_devices % self.nodes:
            raise UserError(f"-n {self.num_devices} (ranks in all) is not a multiple of --nodes {self.nodes}; "
                            "every node runs the same number of ranks")
        if not 0 <= self.node_rank < self.nodes:
            raise UserError(f"--node-rank {self.node_rank} must be in 0..{self.nodes - 1} (--nodes {self.nodes})")
        if not 1024 <= self.master_port <= 65535:
            raise UserError(f"--master-port {self.master_port} must be in 1024..65535")

    @property
    def local_devices(self) -> int:
        return self.num_devices // self.nodes

    @property
    def local_ranks(self) -> List[int]:
        return [self.node_rank * self.local_devices + i for i in range(self.local_devices)]


def worker_args(config: str, output_dir: str, overrides: Sequence[str], device: Optional[str],
                resume: Optional[str], parallel_mode: str = "data_parallel") -> List[str]:
    """``train`` arguments every rank gets: the shared run directory and the parallel mode."""
    forced = [f"parallel.mode={parallel_mode}"] + ([f"runtime.device={device}"] if device else [])
    args = ["train", "-c", config, "--output-dir", output_dir]
    if resume:
        args += ["--resume", resume]
    return args + ["--set", *overrides, *forced]


def find_msrun() -> str:
    """MindSpore's ``msrun`` next to this Python (same environment), else on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "msrun")
    found = beside if os.access(beside, os.X_OK) else shutil.which("msrun")
    if not found:
        raise UserError(f"msrun not found next to {sys.executable} or on PATH; it comes with mindspore>=2.3 "
                        "(pip install mindspore), or launch Ascend jobs with --rank-table")
    return found


def python_dir(scratch: str) -> str:
    """A folder whose ``python`` is this interpreter (msrun starts workers as ``python`` from PATH):
    this interpreter's own folder, else ``scratch`` (:func:`ensure_python` links it there)."""
    here = os.path.dirname(sys.executable)
    candidate = os.path.join(here, "python")
    if os.path.exists(candidate) and os.path.samefile(candidate, sys.executable):
        return here
    return scratch


def ensure_python(folder: str) -> None:
    """Make ``folder/python`` this interpreter (a symlink) unless it already is."""
    link = os.path.join(folder, "python")
    if not os.path.exists(link):
        os.makedirs(folder, exist_ok=True)
        os.symlink(sys.executable, link)


def msrun_command(cluster: Cluster, args: Sequence[str], log_dir: str) -> Process:
    """One msrun per node: it starts this node's workers and, on node 0, the scheduler."""
    argv = [find_msrun(), f"--worker_num={cluster.num_devices}", f"--local_worker_num={cluster.local_devices}",
            f"--master_addr={cluster.master_addr}", f"--master_port={cluster.master_port}",
            f"--node_rank={cluster.node_rank}", f"--log_dir={log_dir}", "--join=True",
            f"--tail_worker_log={cluster.local_ranks[0]}"]
    if cluster.bind_core:
        argv.append("--bind_core=True")
    return Process(argv + ["python", *WORKER, *args], path_prefix=python_dir(os.path.join(log_dir, ".bin")))


def rank_table_commands(cluster: Cluster, table: RankTable, args: Sequence[str], log_dir: str) -> List[Process]:
    """One process per device of this node, as HCCL's rank-table mode expects."""
    if cluster.num_devices != table.rank_size:
        raise UserError(f"-n {cluster.num_devices} but rank table {table.path} lists {table.rank_size} devices; "
                        f"use -n {table.rank_size} or a table for {cluster.num_devices} devices")
    if cluster.nodes != table.server_count:
        raise UserError(f"--nodes {cluster.nodes} but rank table {table.path} lists {table.server_count} "
                        f"server(s); use --nodes {table.server_count}")
    devices = table.server_devices(cluster.node_rank)
    cores = _core_ranges(len(devices)) if cluster.bind_core else [None] * len(devices)
    procs = []
    for device, cpus in zip(devices, cores):
        env = {"RANK_TABLE_FILE": os.path.abspath(table.path), "RANK_SIZE": str(table.rank_size),
               "RANK_ID": str(device.rank_id), "DEVICE_ID": str(logical_device_id(device.device_id))}
        prefix = ["taskset", "-c", cpus] if cpus else []
        procs.append(Process(prefix + [sys.executable, *WORKER, *args], env=env, rank=device.rank_id,
                             log=worker_log(log_dir, device.rank_id)))
    return procs


def node_commands(cluster: Cluster, table: Optional[RankTable], args: Sequence[str], log_dir: str) -> List[Process]:
    """This node's commands: one process per device with a rank table, else one msrun."""
    if table is not None:
        return rank_table_commands(cluster, table, args, log_dir)
    return [msrun_command(cluster, args, log_dir)]


def shell_lines(commands: Sequence[Process]) -> List[str]:
    """Lines that run ``commands`` from a shell as the launcher does: several at once (each in the
    background, then ``wait``), a single one in the foreground."""
    if len(commands) == 1:
        return [commands[0].shell()]
    return [c.shell() + " &" for c in commands] + ["wait"]


def worker_log(log_dir: str, rank: int) -> str:
    return os.path.join(log_dir, f"worker_{rank}.log")


def _core_ranges(count: int) -> List[str]:
    """Split this host's CPUs into ``count`` contiguous ranges for ``taskset``."""
    cpus = sorted(os.sched_getaffinity(0))
    per = max(len(cpus) // count, 1)
    return [f"{cpus[min(i * per, len(cpus) - 1)]}-{cpus[min((i + 1) * per, len(cpus)) - 1]}" for i in range(count)]


def check_port_free(port: int) -> None:
    """The master port must be free on the master node before msrun's scheduler binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed job's TIME_WAIT is no conflict
        try:
            sock.bind(("", port))
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise
            raise UserError(f"--master-port {port} is already in use on this host (another job, or a previous "
                            f"one still exiting); pick a free port, e.g. --master-port {port + 1}") from None


def environment_report(commands: Sequence[Process], argv: Sequence[str]) -> str:
    """What an environment dump holds: host, versions, the commands and the variables that matter."""
    try:
        ms_version = importlib.metadata.version("mindspore")
    except importlib.metadata.PackageNotFoundError:
        ms_version = "not installed"
    lines = [f"# ms-suite launch on {socket.gethostname()} at {datetime.datetime.now().isoformat(timespec='seconds')}",
             f"launcher: {shlex.join(argv)}", f"python: {sys.executable} {sys.version.split()[0]}",
             f"mindspore: {ms_version}", "", "# commands"] + [c.shell() for c in commands] + ["", "# environment"]
    lines += [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES) or k in ENV_NAMES]
    return "\n".join(lines) + "\n"
