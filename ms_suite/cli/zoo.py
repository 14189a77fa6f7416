"""``list`` (the zoo with size, FLOPs, recipes and reference accuracy) and ``convert-weights``."""
from __future__ import annotations

import argparse
import glob
import hashlib
import inspect
import json
import logging
import os
from typing import Dict, List

import yaml

from ms_suite.cli.table import format_mapping, format_table

log = logging.getLogger("ms_suite")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def register(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list the model zoo: params, FLOPs, recipes, reference accuracy")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_list)

    cw = sub.add_parser("convert-weights", help="import third-party weights into a MindSpore checkpoint")
    cw.add_argument("--from", dest="source", choices=["torchvision", "hf"], required=True,
                    help="weight format: torchvision ResNet, or a Hugging Face BERT directory")
    cw.add_argument("--arch", help="zoo model name, e.g. resnet50 (torchvision: required; hf: default from "
                                   "config.json's architectures, e.g. bert_pretraining)")
    cw.add_argument("--src", required=True, help="torchvision: .pth/.pt or .safetensors file; hf: directory with "
                                                 "config.json and model.safetensors or pytorch_model.bin")
    cw.add_argument("--dst", required=True, help="output .ckpt")
    cw.set_defaults(func=cmd_convert)


def recipes_by_model(config_dir: str = CONFIG_DIR) -> Dict[str, List[str]]:
    """Map model name -> recipe paths (relative to the repo) that train it."""
    from ms_suite.config import load_config

    found: Dict[str, List[str]] = {}
    paths = glob.glob(os.path.join(config_dir, "**", "*.yaml"), recursive=True)
    for path in sorted(paths, key=lambda p: (p.count(os.sep), p)):  # top-level recipes first
        if os.sep + "base" + os.sep in path or os.path.basename(path).startswith("base"):
            continue  # bases are building blocks, not recipes
        with open(path) as fh:
            raw = yaml.safe_load(fh) or {}
        if "model" not in raw and not raw.get("base"):
            continue
        name = load_config(path).model.name
        found.setdefault(name, []).append(os.path.relpath(path, REPO_ROOT))
    return found


def _stats_cache() -> str:
    from ms_suite.runtime.device import default_cache_dir

    return os.path.join(default_cache_dir(), "zoo_stats.json")


def model_stats(name: str) -> Dict[str, float]:
    """Parameter count and forward FLOPs at the default input size (cached per model source)."""
    from ms_suite.models import model_info
    from ms_suite.models.flops import measure_model
    from ms_suite.models.registry import _BUILDERS

    info = model_info(name)
    source = inspect.getsource(inspect.getmodule(_BUILDERS[name]))
    key = f"{name}:{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    cache_file = _stats_cache()
    cache = json.load(open(cache_file)) if os.path.isfile(cache_file) else {}
    if key not in cache:
        log.info("measuring %s at %s (once; cached in %s)", name, "x".join(map(str, info.input_size)), cache_file)
        cache[key] = measure_model(name)
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with open(cache_file + ".tmp", "w") as fh:
            json.dump(cache, fh)
        os.replace(cache_file + ".tmp", cache_file)
    return cache[key]


def _short_list(items: List[str], shown: int = 2) -> str:
    """A table cell: the first ``shown`` items and how many more (``--json`` lists them all)."""
    if not items:
        return "-"
    more = f" (+{len(items) - shown} more)" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def cmd_list(args: argparse.Namespace) -> int:
    from ms_suite.models import list_models, model_info

    recipes = recipes_by_model()
    entries = []
    for name in list_models():
        info = model_info(name)
        stats = model_stats(name)
        entries.append({"name": name, "family": info.family, "input": "x".join(map(str, info.input_size)),
                        "params_m": round(stats["params"] / 1e6, 2), "gflops": round(stats["flops"] / 1e9, 3),
                        "recipes": recipes.get(name, []), "reference": info.reference})
    if args.json:
        print(json.dumps(entries, indent=2))
        return 0
    rows = [[e["name"], e["input"], e["params_m"], e["gflops"], _short_list(e["recipes"]), e["reference"] or "-"]
            for e in entries]
    print(format_table(["model", "input", "params (M)", "GFLOPs", "recipes", "reference accuracy (source)"], rows))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    if args.source == "hf":
        from model_zoo.bert import convert_hf_bert

        result = convert_hf_bert(args.src, args.dst, args.arch)
    else:
        from ms_suite.errors import UserError
        from ms_suite.models.weights import convert_torchvision_resnet

        if not args.arch:
            raise UserError("--from torchvision needs --arch, e.g. --arch resnet50")
        result = convert_torchvision_resnet(args.src, args.dst, args.arch)
    print(format_mapping([("source", f"{args.source}: {args.src}"), ("written", args.dst)]
                         + [(k, v) for k, v in result.items()]))
    return 0
