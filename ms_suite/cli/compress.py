"""``compress``: quantize, prune or distill a trained model; prints the before/after report."""
from __future__ import annotations

import argparse
import os

from ms_suite.cli.run import add_recipe_args, run_callbacks
from ms_suite.cli.table import format_table
from ms_suite.config import load_config


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
    from ms_suite.compression import REPORT_NAME, compress, use_pretrained
    from ms_suite.compression.report import layer_rows, summary_rows
    from ms_suite.engine.rundir import default_output_dir

    cfg = load_config(args.config, args.overrides)
    if args.pretrained:
        use_pretrained(cfg, args.pretrained)
    report = compress(cfg, args.output_dir or default_output_dir(args.config), callbacks=run_callbacks(cfg))
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
