"""Sharded evaluation on CPU: eval time with 1 worker versus 2 workers launched by msrun, one core each.

Strong scaling of evaluation: the same eval split (ResNet-18 CIFAR stem, synthetic 32x32 data,
``--samples`` // 4 eval samples, eval batch ``--eval-batch``) is evaluated by one worker, or split
between two data-parallel workers that each evaluate their shard (consecutive whole batches) and
gather the per-sample outputs. Each run trains ``--epochs`` epochs of ``--samples`` samples with an
evaluation after every epoch, under msrun with worker i pinned to core i (as in dp_scaling.py) and
``runtime.num_threads=1``. Eval time is rank 0's ``eval_s`` in summary.json (wall time of one
evaluation: shard dataset, forward passes, gather, metrics); the first evaluation compiles the eval
graph, so the figure is the median of the later ones. Runs alternate 1 2 1 2.
Speedup = eval time with 1 worker / eval time with 2 workers (ideal 2).

    .venv/bin/python benchmarks/eval_scaling.py [--samples 1024] [--eval-batch 32] [--epochs 3] [--rounds 2] [--quick]
"""
from __future__ import annotations

import shutil
import tempfile

from common import QUICK_RESNET, VENV_BIN, LoadWatch, alternate, finish, median, msrun_summary, parse_args

RECIPE = "configs/resnet/resnet18_cifar10.yaml"


def add_arguments(parser) -> None:
    parser.add_argument("--samples", type=int, default=1024, help="synthetic train samples (eval: a quarter)")
    parser.add_argument("--eval-batch", type=int, default=32, help="eval batch size")
    parser.add_argument("--train-batch", type=int, default=256, help="train batch per worker")
    parser.add_argument("--epochs", type=int, default=3, help="epochs (one evaluation after each; >= 2)")
    parser.add_argument("--rounds", type=int, default=2, help="1-worker / 2-worker pairs")


def warm_eval_s(workers: int, args, workdir: str) -> float:
    """One msrun launch: the median eval time after the first (compiling) evaluation."""
    overrides = ["parallel.mode=data_parallel", "runtime.num_threads=1", "data.num_workers=1",
                 "data.name=synthetic", "data.image_size=32", "data.num_classes=10",
                 f"data.synthetic_samples={args.samples}", f"train.batch_size={args.train_batch}",
                 f"train.epochs={args.epochs}", "eval.every_epochs=1", f"eval.batch_size={args.eval_batch}",
                 *(QUICK_RESNET if args.quick else [])]
    summary = msrun_summary(workers, RECIPE, overrides, workdir)
    per_rank = summary["eval_samples_per_rank"]
    if len(per_rank) != workers or sum(per_rank) != args.samples // 4:
        raise RuntimeError(f"{workers} worker(s) evaluated {per_rank} samples of {args.samples // 4}")
    return median(summary["eval_s"][1:])


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    if shutil.which("msrun", path=VENV_BIN) is None:
        raise SystemExit(f"eval_scaling.py: msrun not found in {VENV_BIN}; install mindspore into .venv")
    if args.quick:
        args.samples, args.train_batch, args.epochs, args.rounds = 256, 64, 2, 1
    if args.epochs < 2:
        raise SystemExit("eval_scaling.py: --epochs must be >= 2 (the first evaluation compiles)")
    load = LoadWatch(args.wait_quiet)
    with tempfile.TemporaryDirectory() as workdir:
        found = alternate({"1 worker": lambda: warm_eval_s(1, args, workdir),
                           "2 workers": lambda: warm_eval_s(2, args, workdir)}, args.rounds, load)
    one, two = median(found["1 worker"]), median(found["2 workers"])
    rows = [[name, " ".join(f"{v:.3f}" for v in values), f"{median(values):.3f}"] for name, values in found.items()]
    finish(f"Sharded evaluation on CPU: ResNet-18 CIFAR, {args.samples // 4} eval samples in batches of "
           f"{args.eval_batch}, one core per worker",
           ["launch", "eval s per run", "median"], rows,
           {"benchmark": "eval_scaling", "quick": args.quick, "eval_samples": args.samples // 4,
            "eval_batch": args.eval_batch, "one_worker_eval_s": round(one, 4), "two_workers_eval_s": round(two, 4),
            "speedup": round(one / two, 4), "runs": {k: [round(v, 4) for v in values] for k, values in found.items()}},
           load, [f"speedup = {one:.3f} s / {two:.3f} s = {one / two:.2f} (ideal 2)"])


if __name__ == "__main__":
    main()
