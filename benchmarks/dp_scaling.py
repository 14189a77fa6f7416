"""Data-parallel scaling on CPU: 1 worker versus 2 workers launched by msrun, one core each.

Weak scaling: every worker keeps its batch (default 32; ResNet-18 CIFAR stem, synthetic 32x32
data), so 2 workers process twice the global batch. Each run is ``msrun --bind_core={"device0":
["0"], ...} ... python -m ms_suite train ... --set parallel.mode=data_parallel
runtime.num_threads=1 data.num_workers=1``: worker i is pinned to core i, because one MindSpore
2.7 worker always runs an actor and a kernel thread that split every CPU op, and unpinned it
takes both cores of this machine by itself. Throughput is the rank-0 summary.json's
``samples_per_s`` (all ranks, first step excluded). Runs alternate 1 2 1 2 (and, with
``--option KEY=VALUE``, a 2-worker run with that override after each 2-worker run, e.g.
``--option parallel.grad_reduce_dtype=float16 --option parallel.grad_buckets=4``).
Efficiency = samples/s with 2 workers / (2 x samples/s with 1 worker).

Then the split of the extra step time: ``benchmarks/allreduce_time.py`` under msrun (2 workers,
one core each) all-reduces the model's 44.7 MB of float32 gradients alone, with each reducer, and
times a memcpy of the same bytes; the script prints the extra time per step of 2 workers, the
all-reduce alone and the memory-copy bound (``--no-split`` skips it).

    .venv/bin/python benchmarks/dp_scaling.py [--batch 32] [--steps 30] [--rounds 3] [--option K=V ...] [--quick]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from typing import Dict, List, Sequence

from common import (QUICK_RESNET, ROOT, VENV_BIN, LoadWatch, alternate, finish, free_port, median, msrun_summary,
                    parse_args, progress, target)

RECIPE = "configs/resnet/resnet18_cifar10.yaml"
TARGET = 0.95
REDUCER = "graph reducer"  # the all-reduce TrainStep runs by default


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per worker per run")
    parser.add_argument("--rounds", type=int, default=3, help="1-worker / 2-worker pairs")
    parser.add_argument("--batch", type=int, default=32, help="batch per worker")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="also time 2 workers with this override (repeatable)")
    parser.add_argument("--calls", type=int, default=5, help="all-reduce calls timed per reducer in the split")
    parser.add_argument("--no-split", action="store_true", help="skip the all-reduce micro-benchmark")


def msrun_train(workers: int, batch: int, steps: int, workdir: str, quick: bool, extra: Sequence[str] = ()) -> float:
    """One msrun launch; the global samples/s from rank 0's summary.json."""
    overrides = ["parallel.mode=data_parallel", "runtime.num_threads=1", "data.num_workers=1",
                 "data.name=synthetic", "data.image_size=32", "data.num_classes=10",
                 f"data.synthetic_samples={steps * batch * workers}", f"train.batch_size={batch}",
                 "train.epochs=1", "eval.batch_size=64", *(QUICK_RESNET if quick else []), *extra]
    return msrun_summary(workers, RECIPE, overrides, workdir)["samples_per_s"]


def allreduce_split(calls: int, workdir: str) -> Dict:
    """``allreduce_time.py`` under msrun, 2 workers pinned one core each: rank 0's JSON line."""
    logs = tempfile.mkdtemp(dir=workdir)
    cmd = [os.path.join(VENV_BIN, "msrun"), "--worker_num=2", "--local_worker_num=2",
           "--bind_core=" + json.dumps({"device0": ["0"], "device1": ["1"]}), f"--master_port={free_port()}",
           f"--log_dir={logs}", "--join=True", "python", os.path.join("benchmarks", "allreduce_time.py"),
           "--calls", str(calls)]
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": ROOT}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    with open(os.path.join(logs, "worker_0.log")) as fh:
        lines = [line for line in fh if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"allreduce_time.py under msrun failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def split_notes(split: Dict, one: float, two: float, batch: int) -> List[str]:
    """Where the extra step time of 2 workers goes: the all-reduce alone and the memory-copy bound."""
    t1, t2 = batch / one, 2 * batch / two
    seconds = split["seconds"]
    reduce_s, copy_s = seconds[REDUCER], seconds["memcpy"]
    notes = [f"step time: 1 worker {t1:.3f} s, 2 workers {t2:.3f} s, extra {t2 - t1:.3f} s per step",
             f"gradient all-reduce alone ({split['tensors']} tensors, {split['bytes'] / 1e6:.1f} MB, "
             f"DistributedGradReducer): {reduce_s:.3f} s = {reduce_s / max(t2 - t1, 1e-9):.0%} of the extra time",
             f"memory-copy bound (memcpy of the same bytes): {copy_s:.4f} s; the all-reduce takes "
             f"{reduce_s / copy_s:.0f}x that",
             "all-reduce alone per reducer (s): " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items())]
    return notes


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    if shutil.which("msrun", path=VENV_BIN) is None:
        raise SystemExit(f"dp_scaling.py: msrun not found in {VENV_BIN}; install mindspore into .venv")
    steps, rounds = (3, 1) if args.quick else (args.steps, args.rounds)
    load = LoadWatch(args.wait_quiet)
    with tempfile.TemporaryDirectory() as workdir:
        runs = {"1 worker": lambda: msrun_train(1, args.batch, steps, workdir, args.quick),
                "2 workers": lambda: msrun_train(2, args.batch, steps, workdir, args.quick)}
        for option in args.option:
            runs[f"2 workers, {option}"] = lambda o=option: msrun_train(2, args.batch, steps, workdir, args.quick, [o])
        found = alternate(runs, rounds, load)
        split = None if args.no_split or args.quick else load.run("all-reduce split", lambda: allreduce_split(
            args.calls, workdir))
    one, two = median(found["1 worker"]), median(found["2 workers"])
    efficiency = two / (2 * one)
    rows = [[name, args.batch * (1 if name == "1 worker" else 2), " ".join(f"{v:.2f}" for v in values),
             f"{median(values):.2f}", "" if name == "1 worker" else f"{median(values) / (2 * one):.3f}"]
            for name, values in found.items()]
    notes = [f"efficiency = {two:.2f} / (2 x {one:.2f}) = {efficiency:.3f} (target >= {TARGET})"]
    notes += split_notes(split, one, two, args.batch) if split else []
    progress("done")
    finish(f"Data-parallel weak scaling on CPU: ResNet-18 CIFAR, batch {args.batch} per worker, one core each",
           ["launch", "global batch", "samples/s per run", "median", "efficiency"], rows,
           {"benchmark": "dp_scaling", "quick": args.quick, "one_worker_samples_per_s": round(one, 3),
            "two_workers_samples_per_s": round(two, 3), "batch_per_worker": args.batch,
            "options": {k: round(median(v) / (2 * one), 4) for k, v in found.items() if k.startswith("2 workers, ")},
            "allreduce_split": split,
            "runs": {k: [round(v, 3) for v in values] for k, values in found.items()},
            **target(efficiency, TARGET, "efficiency")},
           load, notes)


if __name__ == "__main__":
    main()
