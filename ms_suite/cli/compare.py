"""``compare``: the deployable variants of compression runs side by side, plus a trade-off plot."""
from __future__ import annotations

import argparse
import os

from ms_suite.cli.table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compare", help="compare compression runs on their deployed files (top-1, MB, "
                                            "ONNX Runtime latency, params, FLOPs) and plot accuracy vs latency")
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by `ms-suite compress`")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="ONNX Runtime intra-op threads, the same for every file (default: all cores)")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per file and batch size")
    parser.add_argument("--plot", default="compare.png", help="accuracy-vs-latency PNG (default compare.png)")
    parser.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from ms_suite import api

    result = api.compare(args.runs, args.threads, args.repeats, args.plot)
    print(format_table(result["headers"], result["rows"]))
    print(f"latency: ONNX Runtime {result['threads']} thread(s), median over {result['repeats']} rounds of "
          f"{result['calls_per_round']} calls, files in turn; random inputs")
    print(f"plot: {result['plot']}")
    print(f"table: {result['table']}")
    return 0
