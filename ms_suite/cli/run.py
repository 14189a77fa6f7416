"""``train``, ``eval`` and ``export``: the run commands that take a recipe."""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Dict

from ms_suite.cli.table import format_mapping

log = logging.getLogger("ms_suite")


def add_recipe_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", required=True, help="recipe YAML, e.g. configs/quickstart.yaml")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys, e.g. --set train.epochs=90 data.path=/data/imagenet")


def register(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train a recipe; writes a run directory")
    add_recipe_args(train)
    train.add_argument("--output-dir", help="run directory (default runs/<recipe>-<timestamp>)")
    train.add_argument("--resume", metavar="auto|CKPT",
                       help="auto: continue from the newest valid checkpoint in --output-dir; or a checkpoint path")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on the recipe's eval split")
    add_recipe_args(ev)
    ev.add_argument("--checkpoint", required=True, help="checkpoint to evaluate (EMA weights used when present)")
    ev.set_defaults(func=cmd_eval)

    ex = sub.add_parser("export", help="export a checkpoint for inference (MINDIR, AIR, ONNX)")
    add_recipe_args(ex)
    ex.add_argument("--checkpoint", required=True, help="checkpoint to export")
    ex.add_argument("--format", choices=["MINDIR", "AIR", "ONNX"],
                    help="file format (default: from --output's extension, else export.format)")
    ex.add_argument("--output", required=True, help="output file, e.g. r50.mindir or r50.onnx")
    ex.add_argument("--no-verify", action="store_true",
                    help="skip running the written file against the network on eval samples")
    ex.set_defaults(func=cmd_export)


def summary_rows(summary: Dict[str, Any]) -> list:
    metrics = summary.get("metrics") or {}
    rows = [("model", summary["model"]), ("dataset", summary["dataset"]),
            ("device", f"{summary['device']} x {summary['world_size']}"),
            ("epochs / steps", f"{summary['epochs']} / {summary['steps']}")]
    rows += [(f"eval {k}", f"{v:.4g}") for k, v in metrics.items() if k != "samples"]
    rows += [("best " + summary.get("monitor", ""), summary["best_metric"]),
             ("samples/s (train)", summary["samples_per_s"]),
             ("data wait share", f"{100 * summary['data_wait_share']:.1f}%"),
             *_throughput_rows(summary),
             ("compile s", summary["compile_s"]), ("time to first step s", summary["time_to_first_step_s"]),
             ("wall s", summary["wall_s"]), ("final checkpoint", summary["final_checkpoint"])]
    return rows


def _throughput_rows(summary: Dict[str, Any]) -> list:
    """The step split and MFU every run adds to its summary."""
    rows = []
    if summary.get("step_data_ms") is not None:  # None: no step after the compiling one was timed
        rows.append(("step ms (data + compute)", f"{summary['step_data_ms']:.2f} + {summary['step_compute_ms']:.2f}"))
    if summary.get("model_flops_per_sample"):
        rows.append(("model GFLOPs/sample (train)", f"{summary['model_flops_per_sample'] / 1e9:.4g}"))
    if summary.get("mfu") is not None:
        rows += [("MFU", f"{100 * summary['mfu']:.2f}% of {summary['peak_tflops']:g} TFLOPS peak"),
                 ("peak from", summary["peak_tflops_source"])]
    elif "mfu" in summary:
        rows.append(("MFU", f"n/a ({summary['peak_tflops_source']})" if summary["peak_tflops"] is None
                     else "n/a (FLOPs or timed steps missing)"))
    return rows


def cmd_train(args: argparse.Namespace) -> int:
    from ms_suite import api

    summary = api.train(args.config, args.output_dir, resume=args.resume, overrides=args.overrides)
    print(format_mapping(summary_rows(summary)))
    print(f"run directory: {summary['run_dir']}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ms_suite import api

    cfg = api.resolve_config(args.config, args.overrides)
    metrics = api.evaluate(cfg, args.checkpoint)
    rows = [("checkpoint", args.checkpoint), ("model", cfg.model.name), ("dataset", cfg.data.name)]
    rows += [(k, f"{v:.4f}" if isinstance(v, float) else v) for k, v in metrics.items()]
    print(format_mapping(rows))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ms_suite import api

    deployed = api.export(args.config, args.checkpoint, args.output, args.format, verify=not args.no_verify,
                          overrides=args.overrides)
    rows = [("format", deployed.format), ("file", deployed.path),
            ("size MB", f"{os.path.getsize(deployed.path) / 1e6:.2f}")]
    if deployed.verification:
        for p in deployed.verification.parity:
            rows.append((f"batch {p.batch}: max abs / rel error", f"{p.max_abs:.3g} / {p.max_rel:.3g}"))
            rows.append((f"batch {p.batch}: top-1 agreement", f"{p.top1_agreement:.1f}%"))
        rows += [(f"latency batch {b} ms", f"{ms_:.2f}") for b, ms_ in deployed.verification.latency_ms.items()]
    rows.append(("manifest", deployed.manifest))
    print(format_mapping(rows))
    return 0
