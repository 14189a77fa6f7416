"""``compress``: quantize, prune or distill a trained model; prints the before/after report."""
from __future__ import annotations

import argparse
import os

from ms_suite.cli.run import add_recipe_args
from ms_suite.cli.table import format_table


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("compress", help="apply a compression recipe (SimQAT, SLB, SCOP, UniPruner, "
                                             "distillation); writes a MINDIR and compression_report.json")
    add_recipe_args(parser)
    parser.add_argument("--pretrained", metavar="CKPT",
                        help="the trained float model to compress (sets model.pretrained; for distill the "
                             "teacher: compression.distill.teacher_checkpoint)")
    parser.add_argument("--output-dir", help="run directory (default runs/<recipe>-<timestamp>)")
    parser.set_defaults(func=cmd_compress)


def cmd_compress(args: argparse.Namespace) -> int:
    from ms_suite import api
    from ms_suite.compression import REPORT_NAME
    from ms_suite.compression.report import layer_rows, summary_rows

    report = api.compress(args.config, args.output_dir, args.pretrained, overrides=args.overrides)
    print(format_table([report["algorithm"], "before", "after", "change"], summary_rows(report)))
    headers, rows = layer_rows(report)
    if rows:
        print()
        print(format_table(headers, rows))
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"exported: {report['after']['file']}")
    if report["after"].get("deployed_file"):
        print(f"deployed (ONNX, verified): {report['after']['deployed_file']}")
    print(f"report: {os.path.join(report['run_dir'], REPORT_NAME)}")
    return 0
