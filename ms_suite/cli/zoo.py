"""``list`` (the zoo with size, FLOPs, recipes and reference accuracy) and ``convert-weights``."""
from __future__ import annotations

import argparse
import json
from typing import List

from ms_suite.cli.table import format_mapping, format_table


def register(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list the model zoo: params, FLOPs, recipes, reference accuracy")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_list)

    cw = sub.add_parser("convert-weights", help="import third-party weights into a MindSpore checkpoint")
    cw.add_argument("--from", dest="source", required=True,
                    help="weight format: torchvision (a ResNet state dict) or hf (a Hugging Face BERT directory)")
    cw.add_argument("--arch", help="zoo model name, e.g. resnet50 (torchvision: required; hf: default from "
                                   "config.json's architectures, e.g. bert_pretraining)")
    cw.add_argument("--src", required=True, help="torchvision: .pth/.pt or .safetensors file; hf: directory with "
                                                 "config.json and model.safetensors or pytorch_model.bin")
    cw.add_argument("--dst", required=True, help="output .ckpt")
    cw.set_defaults(func=cmd_convert)


def _short_list(items: List[str], shown: int = 2) -> str:
    """A table cell: the first ``shown`` items and how many more (``--json`` lists them all)."""
    if not items:
        return "-"
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def cmd_list(args: argparse.Namespace) -> int:
    from ms_suite import api

    entries = api.list_zoo()
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [[e["name"], e["input"], e["params_m"], e["gflops"], _short_list(e["recipes"]), e["reference"] or "-"]
            for e in entries]
    print(format_table(["model", "input", "params (M)", "GFLOPs", "recipes", "reference accuracy (source)"], rows))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ms_suite import api

    result = api.convert_weights(args.source, args.src, args.dst, args.arch)
    print(format_mapping([("source", f"{args.source}: {args.src}"), ("written", args.dst)]
                         + [(k, v) for k, v in result.items()]))
    return 0
