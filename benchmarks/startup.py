"""Start-up: time to the first finished training step, cold versus with a warm compile cache, and
the suite's own share of a warm start.

Each launch is a fresh ``python -m ms_suite train`` process reading ``time_to_first_step_s`` from
its summary.json: seconds from importing ms_suite to the end of the first optimizer step
(imports, device set-up, data pipeline, model construction, graph compile or cache load, the step).
Cold: MS_SUITE_CACHE is a fresh empty folder. Warm: the same folder again, so MindSpore loads the
compiled graphs. Each round uses a new folder; rounds run cold, warm, cold, warm, each followed by
a fresh process that only imports MindSpore (timed).

Recipes: the quickstart (ResNet-18 CIFAR stem on digits, batch 128) and ResNet-50 (224x224, batch 16,
synthetic data). Suite share = warm time to first step - ``import mindspore`` - one steady step
(batch / samples_per_s of the same run): what ms-suite itself adds before training runs at speed.

    .venv/bin/python benchmarks/startup.py [--rounds 3] [--models quickstart resnet50] [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from typing import Dict, List

from common import PYTHON, ROOT, LoadWatch, finish, median, parse_args, progress, target

MODELS = {  # name: (recipe, overrides, quick overrides)
    "quickstart": ("configs/quickstart.yaml", ["train.epochs=1", "train.batch_size=128"],
                   ["train.batch_size=512", "model.kwargs.base_width=8"]),
    "resnet50": ("configs/resnet/resnet50_synthetic.yaml", ["train.epochs=1", "data.synthetic_samples=32"],
                 ["data.image_size=64", "model.kwargs.base_width=8"]),
}
SHARE_TARGET = 0.5  # seconds of warm start-up that are the suite's own
IMPORT_MINDSPORE = "import time; t = time.perf_counter(); import mindspore; print(time.perf_counter() - t)"


def add_arguments(parser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="cold/warm pairs, each with a new cache")
    parser.add_argument("--models", nargs="*", choices=list(MODELS), help="default: all")


def launch(model: str, cache: str, workdir: str, quick: bool) -> Dict[str, float]:
    """One training launch; its start-up figures from summary.json."""
    recipe, overrides, quick_overrides = MODELS[model]
    out = tempfile.mkdtemp(dir=workdir)
    cmd = [PYTHON, "-m", "ms_suite", "train", "-c", recipe, "--output-dir", out, "--set", *overrides,
           *(quick_overrides if quick else [])]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "MS_SUITE_CACHE": cache})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    step_s = summary["global_batch_size"] / summary["samples_per_s"] if summary["samples_per_s"] else 0.0
    return {"time_to_first_step_s": summary["time_to_first_step_s"], "compile_s": summary["compile_s"],
            "steady_step_s": round(step_s, 4)}


def import_mindspore_s() -> float:
    """Seconds a fresh process takes to ``import mindspore``."""
    out = subprocess.run([PYTHON, "-c", IMPORT_MINDSPORE], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def measure(model: str, rounds: int, quick: bool, workdir: str, load: LoadWatch) -> Dict[str, List]:
    runs: Dict[str, List] = {"cold": [], "warm": [], "import_mindspore_s": []}
    for r in range(rounds):
        cache = tempfile.mkdtemp(dir=workdir, prefix="cache")
        for kind in ("cold", "warm"):
            progress(f"{model} round {r + 1}/{rounds}: {kind} launch ...")
            runs[kind].append(load.run(f"{model} {kind}", lambda: launch(model, cache, workdir, quick)))
            runs["import_mindspore_s"].append(round(load.run("import mindspore", import_mindspore_s), 3))
    return runs


def figures(runs: Dict[str, List]) -> Dict[str, float]:
    """Medians, and the suite's share of a warm start."""
    first = {kind: median([run["time_to_first_step_s"] for run in runs[kind]]) for kind in ("cold", "warm")}
    compile_s = {kind: round(median([run["compile_s"] for run in runs[kind]]), 3) for kind in ("cold", "warm")}
    import_s = median(runs["import_mindspore_s"])
    step_s = median([run["steady_step_s"] for run in runs["warm"]])
    return {"cold_s": round(first["cold"], 3), "warm_s": round(first["warm"], 3),
            "ratio": round(first["warm"] / first["cold"], 4), "compile_s": compile_s,
            "import_mindspore_s": round(import_s, 3), "steady_step_s": round(step_s, 3),
            "suite_share_s": round(first["warm"] - import_s - step_s, 3)}


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    rounds = 1 if args.quick else args.rounds
    load = LoadWatch(args.wait_quiet)
    models = args.models or list(MODELS)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for model in models:
            runs = measure(model, rounds, args.quick, workdir, load)
            results[model] = {**figures(runs), "runs": runs}
    rows = [[f"{model} {kind}", " ".join(f"{run['time_to_first_step_s']:.1f}" for run in r["runs"][kind]),
             f"{r[f'{kind}_s']:.2f}", f"{r['compile_s'][kind]:.2f}"] for model, r in results.items()
            for kind in ("cold", "warm")]
    notes = [f"{m}: warm / cold = {r['warm_s']:.2f} / {r['cold_s']:.2f} = {r['ratio']:.3f}; suite share = "
             f"{r['warm_s']:.2f} warm - {r['import_mindspore_s']:.2f} import mindspore - {r['steady_step_s']:.2f} "
             f"steady step = {r['suite_share_s']:.2f} s (target <= {SHARE_TARGET})" for m, r in results.items()]
    head = results[models[0]]
    worst = max(r["suite_share_s"] for r in results.values())
    finish("Start-up: time to first step (fresh process per launch)",
           ["recipe, cache", "time to first step per launch (s)", "median (s)", "compile (s)"], rows,
           {"benchmark": "startup", "quick": args.quick, "cold_s": head["cold_s"], "warm_s": head["warm_s"],
            "warm_over_cold": head["ratio"], "runs": head["runs"], "models": results,
            **target(worst, SHARE_TARGET, key="suite_share_s", at_most=True)}, load, notes)


if __name__ == "__main__":
    main()
