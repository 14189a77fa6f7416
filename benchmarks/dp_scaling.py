"""Data-parallel scaling on CPU: 1 worker versus 2 workers launched by msrun, one core each.

Weak scaling: every worker keeps its batch (default 32; ResNet-18 CIFAR stem, synthetic 32x32
data), so 2 workers process twice the global batch. Each run is ``msrun --bind_core={"device0":
["0"], ...} ... python -m ms_suite train ... --set parallel.mode=data_parallel
runtime.num_threads=1 data.num_workers=1``: worker i is pinned to core i, because one MindSpore
2.7 worker always runs an actor and a kernel thread that split every CPU op, and unpinned it
takes both cores of this machine by itself. Throughput is the rank-0 summary.json's
``samples_per_s`` (all ranks, first step excluded). Runs alternate 1 2 1 2.
Efficiency = samples/s with 2 workers / (2 x samples/s with 1 worker).

    .venv/bin/python benchmarks/dp_scaling.py [--batch 32] [--steps 30] [--rounds 3] [--quick]
"""
from __future__ import annotations

import shutil
import tempfile

from common import QUICK_RESNET, VENV_BIN, LoadWatch, alternate, finish, median, msrun_summary, parse_args, target

RECIPE = "configs/resnet/resnet18_cifar10.yaml"
TARGET = 0.90


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per worker per run")
    parser.add_argument("--rounds", type=int, default=3, help="1-worker / 2-worker pairs")
    parser.add_argument("--batch", type=int, default=32, help="batch per worker")


def msrun_train(workers: int, batch: int, steps: int, workdir: str, quick: bool) -> float:
    """One msrun launch; the global samples/s from rank 0's summary.json."""
    overrides = ["parallel.mode=data_parallel", "runtime.num_threads=1", "data.num_workers=1",
                 "data.name=synthetic", "data.image_size=32", "data.num_classes=10",
                 f"data.synthetic_samples={steps * batch * workers}", f"train.batch_size={batch}",
                 "train.epochs=1", "eval.batch_size=64", *(QUICK_RESNET if quick else [])]
    return msrun_summary(workers, RECIPE, overrides, workdir)["samples_per_s"]


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    if shutil.which("msrun", path=VENV_BIN) is None:
        raise SystemExit(f"dp_scaling.py: msrun not found in {VENV_BIN}; install mindspore into .venv")
    steps, rounds = (3, 1) if args.quick else (args.steps, args.rounds)
    load = LoadWatch(args.wait_quiet)
    with tempfile.TemporaryDirectory() as workdir:
        found = alternate({"1 worker": lambda: msrun_train(1, args.batch, steps, workdir, args.quick),
                           "2 workers": lambda: msrun_train(2, args.batch, steps, workdir, args.quick)}, rounds, load)
    one, two = median(found["1 worker"]), median(found["2 workers"])
    efficiency = two / (2 * one)
    rows = [[name, args.batch * (1 if name == "1 worker" else 2), " ".join(f"{v:.2f}" for v in values),
             f"{median(values):.2f}"] for name, values in found.items()]
    finish(f"Data-parallel weak scaling on CPU: ResNet-18 CIFAR, batch {args.batch} per worker, one core each",
           ["launch", "global batch", "samples/s per run", "median"], rows,
           {"benchmark": "dp_scaling", "quick": args.quick, "one_worker_samples_per_s": round(one, 3),
            "two_workers_samples_per_s": round(two, 3), "batch_per_worker": args.batch,
            "runs": {k: [round(v, 3) for v in values] for k, values in found.items()}, **target(efficiency, TARGET, "efficiency")},
           load, [f"efficiency = {two:.2f} / (2 x {one:.2f}) = {efficiency:.3f} (target >= {TARGET})"])


if __name__ == "__main__":
    main()
