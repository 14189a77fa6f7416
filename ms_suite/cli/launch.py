"""``rank-table validate|generate``, and the launchers behind ``scripts/run_*.sh``.

The scripts run ``python -m ms_suite.cli.launch {standalone,distribute,eval} ARGS``: the flags and
``--help`` below are theirs.
"""
from __future__ import annotations

import argparse
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
    from ms_suite import api
    from ms_suite.launch.rank_table import RankTableError

    try:
        table = api.read_rank_table(args.file)
    except RankTableError as err:
        for problem in err.problems:
            print(f"error: {args.file}: {problem}", file=sys.stderr)
        return err.exit_code
    print(_summary(table))
    print(f"{args.file}: ok, {table.server_count} server(s), {table.rank_size} devices, ranks 0..{table.rank_size - 1}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from ms_suite import api

    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    output = args.output or f"hccl_{len(hosts) * args.devices_per_host}p.json"
    table = api.write_rank_table(hosts, args.devices_per_host, output, args.device_ip_pattern, args.hccn_conf or ())
    print(_summary(table))
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
    one.set_defaults(func=_job_runner("standalone"))

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
    dist.set_defaults(func=_job_runner("distribute"))

    ev = sub.add_parser("eval", prog="scripts/run_eval.sh", description="Evaluate a checkpoint on one device.")
    add_recipe_args(ev)
    ev.add_argument("--checkpoint", required=True, help="checkpoint to evaluate")
    _device_args(ev, device_id=True)
    ev.set_defaults(func=_job_runner("eval"))
    return parser


def _job_runner(kind: str):
    """The script's function: its flags as a :class:`ms_suite.launch.jobs.LaunchJob`, run by the api."""

    def run(args: argparse.Namespace) -> int:
        from ms_suite import api

        return api.launch(kind, **{key: value for key, value in vars(args).items() if key not in ("script", "func")})

    return run


def script_main(argv: Optional[List[str]] = None) -> int:
    args = build_script_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(script_main())
