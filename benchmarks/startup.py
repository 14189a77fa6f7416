"""Start-up: time to the first finished training step, cold versus with a warm compile cache.

Each launch is a fresh ``python -m ms_suite train -c configs/quickstart.yaml`` process (ResNet-18,
digits, one epoch) reading ``time_to_first_step_s`` from its summary.json: seconds from importing
ms_suite to the end of the first optimizer step (imports, device set-up, data pipeline, graph
compile, the step). Cold: MS_SUITE_CACHE is a fresh empty folder. Warm: the same folder again, so
MindSpore loads the compiled graphs. Each round uses a new folder; rounds run cold, warm, cold, warm.

    .venv/bin/python benchmarks/startup.py [--rounds 3] [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Dict

from common import ROOT, LoadWatch, finish, median, parse_args, progress, target

RECIPE = "configs/quickstart.yaml"
TARGET = 0.25


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="cold/warm pairs, each with a new cache")


def launch(cache: str, workdir: str, quick: bool) -> Dict[str, float]:
    out = tempfile.mkdtemp(dir=workdir)
    overrides = ["train.epochs=1", "train.batch_size=512" if quick else "train.batch_size=128",
                 *(["model.kwargs.base_width=8"] if quick else [])]
    cmd = [sys.executable, "-m", "ms_suite", "train", "-c", RECIPE, "--output-dir", out, "--set", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "MS_SUITE_CACHE": cache})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    return {"time_to_first_step_s": summary["time_to_first_step_s"], "compile_s": summary["compile_s"]}


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    rounds = 1 if args.quick else args.rounds
    load = LoadWatch(args.wait_quiet)
    runs: Dict[str, list] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory() as workdir:
        for r in range(rounds):
            cache = tempfile.mkdtemp(dir=workdir, prefix="cache")
            for kind in ("cold", "warm"):
                progress(f"round {r + 1}/{rounds}: {kind} launch ...")
                runs[kind].append(load.run(kind, lambda: launch(cache, workdir, args.quick)))
    first = {k: median([run["time_to_first_step_s"] for run in v]) for k, v in runs.items()}
    compile_s = {k: median([run["compile_s"] for run in v]) for k, v in runs.items()}
    share = first["warm"] / first["cold"]
    rows = [[kind, " ".join(f"{run['time_to_first_step_s']:.1f}" for run in runs[kind]), f"{first[kind]:.2f}",
             f"{compile_s[kind]:.2f}"] for kind in runs]
    finish("Start-up: time to first step (quickstart, fresh process per launch)",
           ["cache", "time to first step per launch (s)", "median (s)", "compile (s)"], rows,
           {"benchmark": "startup", "quick": args.quick, "cold_s": round(first["cold"], 3),
            "warm_s": round(first["warm"], 3), "compile_s": compile_s, "runs": runs,
            **target(share, TARGET, at_most=True)}, load,
           [f"warm / cold = {first['warm']:.2f} / {first['cold']:.2f} = {share:.3f} (target <= {TARGET})"])


if __name__ == "__main__":
    main()
