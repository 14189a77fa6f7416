"""``rank-table validate|generate``, and the launchers behind ``scripts/run_*.sh``.

The scripts run ``python -m ms_suite.cli.launch {standalone,distribute,eval} ARGS``: the flags and
``--help`` below are theirs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

from ms_suite.cli.run import add_recipe_args
from ms_suite.cli.table import format_table
from ms_suite.errors import UserError

DEVICES = ["Ascend", "GPU", "CPU"]


# --------------------------------------------------------------------------- ms-suite rank-table


def register(sub: argparse._SubParsersAction) -> None:
    rt = sub.add_parser("rank-table", help="check or write an Ascend rank table (HCCL json)")
    actions = rt.add_subparsers(dest="rank_table_command", metavar="ACTION", required=True)

    check = actions.add_parser("validate", help="check schema, counts, unique device IPs and rank ids 0..N-1")
    check.add_argument("file", help="hccl json, e.g. hccl_8p.json")
    check.set_defaults(func=cmd_validate)

    gen = actions.add_parser("generate", help="write a rank table (hccl json v1.0, as hccl_tools.py does)")
    gen.add_argument("--hosts", required=True, help="comma-separated host IPs in node-rank order, e.g. "
                                                    "10.0.0.1,10.0.0.2 (the server_id of each server)")
    gen.add_argument("--devices-per-host", type=int, default=8, help="NPUs used on every host (ids 0..N-1)")
    ips = gen.add_mutually_exclusive_group(required=True)
    ips.add_argument("--hccn-conf", nargs="+", metavar="FILE", help="each host's /etc/hccn.conf (copied here), in "
                                                                    "--hosts order: device IPs from address_<id>=")
    ips.add_argument("--device-ip-pattern", metavar="PATTERN",
                     help="device IPs from a pattern with {host} (host index), {octet} (last number of the host "
                          "IP), {device} (device id) and {rank}, e.g. '192.168.10{device}.{octet}'")
    gen.add_argument("-o", "--output", help="file to write (default hccl_<N>p.json)")
    gen.set_defaults(func=cmd_generate)


def _summary(table) -> str:
    rows = [(d.rank_id, d.server_id, d.device_id, d.device_ip) for d in table.devices]
    return format_table(["rank", "server", "device", "device ip"], rows)


def cmd_validate(args: argparse.Namespace) -> int:
    from ms_suite.launch.rank_table import RankTableError, load_rank_table

    try:
        table = load_rank_table(args.file)
    except RankTableError as err:
        for problem in err.problems:
            print(f"error: {args.file}: {problem}", file=sys.stderr)
        return err.exit_code
    print(_summary(table))
    print(f"{args.file}: ok, {table.server_count} server(s), {table.rank_size} devices, ranks 0..{table.rank_size - 1}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ms_suite.launch.rank_table import build_rank_table, check_rank_table, device_ip_table, load_rank_table

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    if args.devices_per_host < 1:
        raise UserError(f"--devices-per-host {args.devices_per_host} must be at least 1")
    device_ips = device_ip_table(hosts, args.devices_per_host, pattern=args.device_ip_pattern,
                                 hccn_confs=args.hccn_conf or ())
    table = build_rank_table(hosts, device_ips)
    output = args.output or f"hccl_{len(hosts) * args.devices_per_host}p.json"
    check_rank_table(table, output)
    with open(output, "w") as fh:
        json.dump(table, fh, indent=4)
    print(_summary(load_rank_table(output)))
    print(f"wrote {output}")
    return 0


# --------------------------------------------------------------------------- scripts/run_*.sh


def _device_args(parser: argparse.ArgumentParser, device_id: bool) -> None:
    parser.add_argument("--device", choices=DEVICES, help="device to run on (default: the recipe's runtime.device)")
    if device_id:
        parser.add_argument("--device-id", type=int, help="device index on this host (runtime.device_id)")
    parser.add_argument("--print-cmd", action="store_true", help="print the exact command(s) and exit")


def build_script_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ms_suite.cli.launch")
    sub = parser.add_subparsers(dest="script", required=True)

    one = sub.add_parser("standalone", prog="scripts/run_standalone_train.sh",
                         description="Train a recipe on one device; writes a run directory.")
    add_recipe_args(one)
    _device_args(one, device_id=True)
    one.add_argument("--output-dir", help="run directory (default runs/<recipe>-<timestamp>)")
    one.add_argument("--resume", metavar="auto|CKPT", help="continue a run (see `ms-suite train --help`)")
    one.set_defaults(func=run_standalone)

    dist = sub.add_parser("distribute", prog="scripts/run_distribute_train.sh",
                          description="Data-parallel training with msrun (Ascend, GPU, CPU) or an Ascend rank "
                                      "table. Run the same command on every node, changing only --node-rank.")
    add_recipe_args(dist)
    dist.add_argument("-n", "--num-devices", type=int, required=True,
                      help="ranks in all, over every node (msrun --worker_num, RANK_SIZE)")
    _device_args(dist, device_id=False)
    dist.add_argument("--rank-table", metavar="JSON", help="Ascend only: launch one process per device with "
                                                           "this HCCL rank table instead of msrun")
    dist.add_argument("--nodes", type=int, default=1, help="hosts taking part (default 1)")
    dist.add_argument("--node-rank", type=int, help="this host's index, 0..nodes-1 (required with --nodes > 1)")
    dist.add_argument("--master-addr", default="127.0.0.1", help="IP of node 0 (required with --nodes > 1)")
    dist.add_argument("--master-port", type=int, default=8118, help="free TCP port on node 0 (default 8118)")
    dist.add_argument("--bind-core", action="store_true", help="pin each rank to its share of this host's CPUs")
    dist.add_argument("--output-dir", help="run directory shared by all ranks (default runs/<recipe>-<timestamp>; "
                                           "required with --nodes > 1: the same shared path on every node)")
    dist.add_argument("--resume", metavar="auto|CKPT", help="continue a run (see `ms-suite train --help`)")
    dist.add_argument("--max-restarts", type=int, default=0, metavar="N",
                      help="when a rank fails or hangs, stop all ranks and relaunch the job from the newest "
                           "checkpoint every rank can load, up to N times (default 0; a rank's user error, "
                           "exit code 2, is never retried); see restarts.jsonl in the run directory")
    dist.add_argument("--hang-timeout", type=float, metavar="S",
                      help="a rank whose step has not advanced for S seconds has hung: its Python stack goes "
                           "to its log and the job stops (or restarts); S must cover start-up, graph compile "
                           "and evaluation (default: off)")
    dist.set_defaults(func=run_distribute)

    ev = sub.add_parser("eval", prog="scripts/run_eval.sh", description="Evaluate a checkpoint on one device.")
    add_recipe_args(ev)
    ev.add_argument("--checkpoint", required=True, help="checkpoint to evaluate")
    _device_args(ev, device_id=True)
    ev.set_defaults(func=run_eval)
    return parser


def _device_overrides(args: argparse.Namespace) -> List[str]:
    sets = [f"runtime.device={args.device}"] if args.device else []
    if getattr(args, "device_id", None) is not None:
        sets.append(f"runtime.device_id={args.device_id}")
    return sets


def _check_recipe(args: argparse.Namespace, extra: List[str]):
    """Load the recipe: fail once here, not once per rank, on a bad recipe or --set."""
    from ms_suite.config import load_config

    return load_config(args.config, [*args.overrides, *extra])


def _output_dir(args: argparse.Namespace) -> str:
    from ms_suite.engine.rundir import default_output_dir

    return os.path.abspath(args.output_dir or default_output_dir(args.config))


def _write_env(path: str, commands) -> None:
    from ms_suite.launch.commands import environment_report

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(environment_report(commands, sys.argv))


def _single(args: argparse.Namespace, argv: List[str], env_file: Optional[str]) -> int:
    from ms_suite.launch.commands import Process
    from ms_suite.launch.supervisor import run_single

    command = Process([sys.executable, "-m", "ms_suite", *argv])
    if args.print_cmd:
        print(command.shell())
        return 0
    if env_file:
        _write_env(env_file, [command])
    return run_single(command)


def run_standalone(args: argparse.Namespace) -> int:
    sets = _device_overrides(args)
    _check_recipe(args, sets)
    out = _output_dir(args)
    argv = ["train", "-c", args.config, "--output-dir", out] + (["--resume", args.resume] if args.resume else [])
    return _single(args, argv + ["--set", *args.overrides, *sets], os.path.join(out, "logs", "env.txt"))


def run_eval(args: argparse.Namespace) -> int:
    sets = _device_overrides(args)
    _check_recipe(args, sets)
    argv = ["eval", "-c", args.config, "--checkpoint", args.checkpoint]
    if args.overrides or sets:
        argv += ["--set", *args.overrides, *sets]
    return _single(args, argv, None)


def _cluster(args: argparse.Namespace):
    """Check the node flags; returns the Cluster and the device (a rank table implies Ascend)."""
    from ms_suite.launch.commands import Cluster

    if args.nodes > 1 and (args.node_rank is None or args.output_dir is None):
        raise UserError("with --nodes > 1 set --node-rank (this host's index, 0..nodes-1) and --output-dir "
                        "(the same shared folder on every node)")
    if args.nodes > 1 and not args.rank_table and args.master_addr == "127.0.0.1":
        raise UserError("with --nodes > 1 set --master-addr to node 0's IP address (msrun's scheduler runs there)")
    device = args.device or ("Ascend" if args.rank_table else None)
    if args.rank_table and device != "Ascend":
        raise UserError(f"--rank-table is HCCL's launch mode and needs --device Ascend, not {device}; "
                        "drop --rank-table to launch with msrun")
    cluster = Cluster(args.num_devices, args.nodes, args.node_rank or 0, args.master_addr, args.master_port,
                      args.bind_core)
    return cluster, device


def _restart_policy(args: argparse.Namespace, out: str, node: int):
    from ms_suite.launch.supervisor import RestartPolicy

    if args.max_restarts < 0:
        raise UserError(f"--max-restarts {args.max_restarts} must be 0 or more")
    if args.hang_timeout is not None and args.hang_timeout <= 0:
        raise UserError(f"--hang-timeout {args.hang_timeout:g} must be a positive number of seconds, e.g. 600")
    return RestartPolicy(args.max_restarts, args.hang_timeout, out, node)


def run_distribute(args: argparse.Namespace) -> int:
    from ms_suite.launch.commands import check_port_free, node_commands, shell_lines, worker_args, worker_log
    from ms_suite.launch.rank_table import load_rank_table
    from ms_suite.launch.supervisor import RankLog, Supervisor

    cluster, device = _cluster(args)
    cfg = _check_recipe(args, [f"runtime.device={device}"] if device else [])
    # A standalone recipe runs data parallel; a recipe asking for semi_auto/auto_parallel keeps it.
    mode = "data_parallel" if cfg.parallel.mode == "standalone" else cfg.parallel.mode
    out = _output_dir(args)
    policy = _restart_policy(args, out, cluster.node_rank)
    log_dir = os.path.join(out, "logs")
    table = load_rank_table(args.rank_table) if args.rank_table else None

    def launch(resume: Optional[str]) -> list:
        """This node's commands; a restart resumes from ``resume``."""
        return node_commands(cluster, table, worker_args(args.config, out, args.overrides, device,
                                                         resume or args.resume, mode), log_dir)

    commands = launch(None)
    local = [c.rank for c in commands] if table else cluster.local_ranks
    span = f"ranks {min(local)}-{max(local)} of {cluster.num_devices}"
    if args.print_cmd:
        print(f"# node {cluster.node_rank} of {cluster.nodes}: {span}")
        if policy.max_restarts or policy.hang_timeout:
            print("# --max-restarts / --hang-timeout are the launcher's: these commands run the job once")
        print("\n".join(shell_lines(commands)))
        return 0
    if not args.rank_table and cluster.node_rank == 0:
        check_port_free(cluster.master_port)
    env_file = os.path.join(log_dir, "env.txt" if cluster.nodes == 1 else f"env_node{cluster.node_rank}.txt")
    _write_env(env_file, commands)
    how = f"rank table {args.rank_table}" if args.rank_table else "msrun"
    print(f"launching {span} ({mode}) with {how}\n  logs: {log_dir}/worker_<rank>.log\n  environment: {env_file}",
          flush=True)
    ranks = [RankLog(rank, worker_log(log_dir, rank)) for rank in local]
    code = Supervisor(launch, ranks, msrun=not args.rank_table, policy=policy).run()
    if code == 0:
        print(f"all ranks finished; run directory: {out}; logs: {log_dir}")
    return code


def script_main(argv: Optional[List[str]] = None) -> int:
    args = build_script_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(script_main())
