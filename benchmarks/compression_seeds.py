"""Compression results over several seeds: the float model and every recipe in configs/compress/.

For each seed, train the float model (configs/quickstart.yaml with train.seed=SEED), then compress it
with each recipe at the same seed. Prints a table, then one JSON line per algorithm (the float model
first): top-1 per seed, mean, std, min, max; for the recipes also the mean's drop from the float mean
and whether the suite's bound holds for that mean. A run folder that already holds its result is read,
not rerun (delete it to measure again), so an interrupted sweep continues where it stopped.

    python benchmarks/compression_seeds.py [--seeds 42 43 44] [--algorithms simqat scop ...] [--set KEY=VALUE ...]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PYTHON, QUICK_RESNET, ROOT, machine, parse_args, progress  # noqa: E402

from ms_suite.cli.table import format_table  # noqa: E402

ALGORITHMS = ("simqat", "slb", "scop", "unipruner", "distill")
# Largest allowed drop of the mean top-1 below the float mean, in points; SLB (its convolutions
# restart) must instead reach SLB_FLOOR, three times chance.
MAX_DROP = {"simqat": 0.5, "scop": 1.0, "unipruner": 1.0, "distill": 1.5}
SLB_FLOOR = 30.0
QUICK = [*QUICK_RESNET, "train.epochs=1"]


def options(parser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--algorithms", nargs="+", choices=ALGORITHMS, default=list(ALGORITHMS))
    parser.add_argument("--runs-dir", default=os.path.join(ROOT, "runs", "compression_seeds"))
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="overrides for every run, float and compressed (e.g. model.kwargs.base_width=16)")


def cli(args: Sequence[str], log_path: str) -> float:
    """Run ``ms-suite ARGS`` (output to ``log_path``); returns the wall seconds."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.run([PYTHON, "-m", "ms_suite", *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"ms-suite {' '.join(args)} exited {proc.returncode}; see {log_path}")
    return time.perf_counter() - start


def float_run(folder: str, seed: int, extra: Sequence[str]) -> Dict[str, Any]:
    """Train (or read) the float model of ``seed``: its best checkpoint, top-1 and wall time."""
    summary = os.path.join(folder, "summary.json")
    seconds = None
    if not os.path.isfile(summary):
        progress(f"seed {seed}: training the float model ...")
        seconds = cli(["train", "-c", "configs/quickstart.yaml", "--output-dir", folder,
                       "--set", f"train.seed={seed}", *extra], folder + ".log")
    with open(summary) as fh:
        top1 = json.load(fh)["best_metric"]
    return {"top1": top1, "checkpoint": os.path.join(folder, "checkpoints", "best.ckpt"), "seconds": seconds}


def compress_run(folder: str, name: str, seed: int, pretrained: str, extra: Sequence[str]) -> Dict[str, Any]:
    """Compress (or read) ``pretrained`` with recipe ``name`` at ``seed``: before/after top-1, wall time."""
    report = os.path.join(folder, "compression_report.json")
    seconds = None
    if not os.path.isfile(report):
        progress(f"seed {seed}: {name} ...")
        seconds = cli(["compress", "-c", f"configs/compress/resnet18_digits_{name}.yaml", "--pretrained", pretrained,
                       "--output-dir", folder, "--set", f"train.seed={seed}", *extra], folder + ".log")
    with open(report) as fh:
        data = json.load(fh)
    return {"before": data["before"]["metrics"]["top1"], "top1": data["after"]["metrics"]["top1"],
            "seconds": seconds}


def spread(values: List[float]) -> Dict[str, float]:
    return {"mean": round(statistics.fmean(values), 3),
            "std": round(statistics.stdev(values), 3) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def verdict(name: str, mean: float, float_mean: float) -> Dict[str, Any]:
    """The bound for ``name`` and whether ``mean`` meets it."""
    if name == "slb":
        return {"bound": f"top1 >= {SLB_FLOOR}", "met": mean >= SLB_FLOOR}
    drop = round(float_mean - mean, 3)
    return {"drop_pt": drop, "bound": f"drop <= {MAX_DROP[name]}", "met": drop <= MAX_DROP[name]}


def summarize(name: str, seeds: Sequence[int], runs: List[Dict[str, Any]],
              float_mean: Optional[float]) -> Dict[str, Any]:
    top1 = [run["top1"] for run in runs]
    row = {"algorithm": name, "seeds": list(seeds), "top1": top1, **spread(top1),
           "seconds": [None if run["seconds"] is None else round(run["seconds"]) for run in runs]}
    if float_mean is not None:
        row["paired_drop_pt"] = [round(run["before"] - run["top1"], 3) for run in runs]
        row.update(verdict(name, row["mean"], float_mean))
    return row


def main() -> None:
    args = parse_args(__doc__, options)
    extra = [*(QUICK if args.quick else []), *args.overrides]
    runs_dir = os.path.join(args.runs_dir, "quick") if args.quick else args.runs_dir
    floats = []
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in args.algorithms}
    for seed in args.seeds:
        seed_dir = os.path.join(runs_dir, f"seed{seed}")
        os.makedirs(seed_dir, exist_ok=True)
        floats.append(float_run(os.path.join(seed_dir, "float"), seed, extra))
        for name in args.algorithms:
            results[name].append(compress_run(os.path.join(seed_dir, name), name, seed,
                                              floats[-1]["checkpoint"], extra))
    rows = [summarize("float", args.seeds, floats, None)]
    rows += [summarize(name, args.seeds, results[name], rows[0]["mean"]) for name in args.algorithms]
    print(format_table(["algorithm", "top-1 per seed", "mean", "std", "min", "max", "bound", "met"],
                       [[row["algorithm"], " ".join(f"{v:.2f}" for v in row["top1"]), f"{row['mean']:.2f}",
                         f"{row['std']:.2f}", f"{row['min']:.2f}", f"{row['max']:.2f}", row.get("bound", ""),
                         row.get("met", "")] for row in rows]))
    context = {"benchmark": "compression_seeds", "quick": args.quick, "overrides": args.overrides,
               "machine": machine()}
    for row in rows:
        print(json.dumps({**row, **context}), flush=True)


if __name__ == "__main__":
    main()
