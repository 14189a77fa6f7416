"""``compare``: the deployable variants of compression runs side by side, plus a trade-off plot."""
from __future__ import annotations

import argparse
import os


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
    from ms_suite.cli.table import format_table
    from ms_suite.compression.compare import (TABLE_HEADERS, measure_latency, plot, read_variants, table_rows,
                                              write_json)
    from ms_suite.errors import UserError

    if args.threads < 1 or args.repeats < 1:
        raise UserError("--threads and --repeats take a positive number")
    variants = read_variants(args.runs)
    measure_latency(variants, args.threads, args.repeats)
    print(format_table(TABLE_HEADERS, table_rows(variants)))
    print(f"latency: ONNX Runtime {args.threads} thread(s), median of {args.repeats} runs; random inputs")
    print(f"plot: {plot(variants, args.plot, args.threads)}")
    print(f"table: {write_json(variants, os.path.splitext(args.plot)[0] + '.json', args.threads)}")
    return 0
