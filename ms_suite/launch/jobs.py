"""The jobs behind ``scripts/run_*.sh``: one device (train, eval) or this node's share of a data-parallel
job, checked once (recipe, flags, ports) before any process starts, then run and supervised."""
from __future__ import annotations

import dataclasses
import os
import sys
from typing import List, Optional

from ms_suite.config import Config, load_config
from ms_suite.engine.rundir import default_output_dir
from ms_suite.errors import UserError
from ms_suite.launch.commands import (Cluster, Process, check_port_free, environment_report, node_commands,
                                      shell_lines, worker_args, worker_log)
from ms_suite.launch.rank_table import load_rank_table
from ms_suite.launch.supervisor import RankLog, RestartPolicy, Supervisor, run_single


@dataclasses.dataclass
class LaunchJob:
    """What a launch script asks for (its flags; see ``scripts/run_*.sh --help``)."""

    config: str
    overrides: List[str] = dataclasses.field(default_factory=list)
    device: Optional[str] = None
    device_id: Optional[int] = None
    output_dir: Optional[str] = None
    resume: Optional[str] = None
    checkpoint: Optional[str] = None
    print_cmd: bool = False
    num_devices: int = 1
    nodes: int = 1
    node_rank: Optional[int] = None
    master_addr: str = "127.0.0.1"
    master_port: int = 8118
    bind_core: bool = False
    rank_table: Optional[str] = None
    max_restarts: int = 0
    hang_timeout: Optional[float] = None


def _device_overrides(job: LaunchJob) -> List[str]:
    sets = [f"runtime.device={job.device}"] if job.device else []
    if getattr(job, "device_id", None) is not None:
        sets.append(f"runtime.device_id={job.device_id}")
    return sets


def _check_recipe(job: LaunchJob, extra: List[str]) -> Config:
    """Load the recipe: fail once here, not once per rank, on a bad recipe or --set."""
    return load_config(job.config, [*job.overrides, *extra])


def _output_dir(job: LaunchJob) -> str:
    return os.path.abspath(job.output_dir or default_output_dir(job.config))


def _write_env(path: str, commands) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(environment_report(commands, sys.argv))


def _single(job: LaunchJob, argv: List[str], env_file: Optional[str]) -> int:
    command = Process([sys.executable, "-m", "ms_suite", *argv])
    if job.print_cmd:
        print(command.shell())
        return 0
    if env_file:
        _write_env(env_file, [command])
    return run_single(command)


def run_standalone(job: LaunchJob) -> int:
    """Train on one device in a child process (``scripts/run_standalone_train.sh``)."""
    sets = _device_overrides(job)
    _check_recipe(job, sets)
    out = _output_dir(job)
    argv = ["train", "-c", job.config, "--output-dir", out] + (["--resume", job.resume] if job.resume else [])
    return _single(job, argv + ["--set", *job.overrides, *sets], os.path.join(out, "logs", "env.txt"))


def run_eval(job: LaunchJob) -> int:
    """Evaluate a checkpoint on one device in a child process (``scripts/run_eval.sh``)."""
    sets = _device_overrides(job)
    _check_recipe(job, sets)
    argv = ["eval", "-c", job.config, "--checkpoint", job.checkpoint]
    if job.overrides or sets:
        argv += ["--set", *job.overrides, *sets]
    return _single(job, argv, None)


def _cluster(job: LaunchJob):
    """Check the node flags; returns the Cluster and the device (a rank table implies Ascend)."""
    if job.nodes > 1 and (job.node_rank is None or job.output_dir is None):
        raise UserError("with --nodes > 1 set --node-rank (this host's index, 0..nodes-1) and --output-dir "
                        "(the same shared folder on every node)")
    if job.nodes > 1 and not job.rank_table and job.master_addr == "127.0.0.1":
        raise UserError("with --nodes > 1 set --master-addr to node 0's IP address (msrun's scheduler runs there)")
    device = job.device or ("Ascend" if job.rank_table else None)
    if job.rank_table and device != "Ascend":
        raise UserError(f"--rank-table is HCCL's launch mode and needs --device Ascend, not {device}; "
                        "drop --rank-table to launch with msrun")
    cluster = Cluster(job.num_devices, job.nodes, job.node_rank or 0, job.master_addr, job.master_port,
                      job.bind_core)
    return cluster, device


def _restart_policy(job: LaunchJob, out: str, node: int):
    if job.max_restarts < 0:
        raise UserError(f"--max-restarts {job.max_restarts} must be 0 or more")
    if job.hang_timeout is not None and job.hang_timeout <= 0:
        raise UserError(f"--hang-timeout {job.hang_timeout:g} must be a positive number of seconds, e.g. 600")
    return RestartPolicy(job.max_restarts, job.hang_timeout, out, node)


def run_distribute(job: LaunchJob) -> int:
    """Start this node's ranks under msrun or a rank table and supervise them (``scripts/run_distribute_train.sh``)."""
    cluster, device = _cluster(job)
    cfg = _check_recipe(job, [f"runtime.device={device}"] if device else [])
    # A standalone recipe runs data parallel; a recipe asking for semi_auto/auto_parallel keeps it.
    mode = "data_parallel" if cfg.parallel.mode == "standalone" else cfg.parallel.mode
    out = _output_dir(job)
    policy = _restart_policy(job, out, cluster.node_rank)
    log_dir = os.path.join(out, "logs")
    table = load_rank_table(job.rank_table) if job.rank_table else None

    def launch(resume: Optional[str]) -> list:
        """This node's commands; a restart resumes from ``resume``."""
        return node_commands(cluster, table, worker_args(job.config, out, job.overrides, device,
                                                         resume or job.resume, mode), log_dir)

    commands = launch(None)
    local = [c.rank for c in commands] if table else cluster.local_ranks
    span = f"ranks {min(local)}-{max(local)} of {cluster.num_devices}"
    if job.print_cmd:
        print(f"# node {cluster.node_rank} of {cluster.nodes}: {span}")
        if policy.max_restarts or policy.hang_timeout:
            print("# --max-restarts / --hang-timeout are the launcher's: these commands run the job once")
        print("\n".join(shell_lines(commands)))
        return 0
    if not job.rank_table and cluster.node_rank == 0:
        check_port_free(cluster.master_port)
    env_file = os.path.join(log_dir, "env.txt" if cluster.nodes == 1 else f"env_node{cluster.node_rank}.txt")
    _write_env(env_file, commands)
    how = f"rank table {job.rank_table}" if job.rank_table else "msrun"
    print(f"launching {span} ({mode}) with {how}\n  logs: {log_dir}/worker_<rank>.log\n  environment: {env_file}",
          flush=True)
    ranks = [RankLog(rank, worker_log(log_dir, rank)) for rank in local]
    code = Supervisor(launch, ranks, msrun=not job.rank_table, policy=policy).run()
    if code == 0:
        print(f"all ranks finished; run directory: {out}; logs: {log_dir}")
    return code
