"""``list`` (the zoo with size, FLOPs, recipes and reference accuracy) and ``convert-weights``."""
from __future__ import annotations

import argparse
import glob
import hashlib
import inspect
import json
import os
from typing import Dict, List

import yaml

from ms_suite.cli.table import format_mapping, format_table

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def register(sub: argparse._SubParsersAction) -> None:
    ls = sub.add_parser("list", help="list the model zoo: params, FLOPs, recipes, reference accuracy")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=cmd_list)

    cw = sub.add_parser("convert-weights", help="import third-party weights into a MindSpore checkpoint")
    cw.add_argument("--from", dest="source", choices=["torchvision"], required=True, help="weight format")
    cw.add_argument("--arch", required=True, help="zoo model name, e.g. resnet50")
    cw.add_argument("--src", required=True, help=".pth/.pt or .safetensors file")
    cw.add_argument("--dst", required=True, help="output .ckpt")
    cw.set_defaults(func=cmd_convert)


def recipes_by_model(config_dir: str = CONFIG_DIR) -> Dict[str, List[str]]:
    """Map model name -> recipe paths (relative to the repo) that train it."""
    from ms_suite.config import load_config

    found: Dict[str, List[str]] = {}
    for path in sorted(glob.glob(os.path.join(config_dir, "**", "*.yaml"), recursive=True)):
        if os.sep + "base" + os.sep in path:
            continue
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
    from ms_suite.models import create_model, model_info
    from ms_suite.models.flops import count_flops, count_params
    from ms_suite.models.registry import _BUILDERS

    info = model_info(name)
    source = inspect.getsource(inspect.getmodule(_BUILDERS[name]))
    key = f"{name}:{hashlib.sha1(source.encode()).hexdigest()[:12]}"
    cache_file = _stats_cache()
    cache = json.load(open(cache_file)) if os.path.isfile(cache_file) else {}
    if key not in cache:
        net = create_model(name)
        cache[key] = {"params": count_params(net), "flops": count_flops(net, info.input_size)}
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with open(cache_file + ".tmp", "w") as fh:
            json.dump(cache, fh)
        os.replace(cache_file + ".tmp", cache_file)
    return cache[key]


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
    rows = [[e["name"], e["input"], e["params_m"], e["gflops"], ", ".join(e["recipes"]) or "-", e["reference"] or "-"]
            for e in entries]
    print(format_table(["model", "input", "params (M)", "GFLOPs", "recipes", "reference accuracy (source)"], rows))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from ms_suite.models.weights import convert_torchvision_resnet

    result = convert_torchvision_resnet(args.src, args.dst, args.arch)
    print(format_mapping([("source", f"{args.source}: {args.src}"), ("written", args.dst)]
                         + [(k, v) for k, v in result.items()]))
    return 0
