"""Suite overhead: ms-suite's Trainer versus a bare MindSpore loop, same network, batch and data.

A: ``Trainer.fit`` on the ResNet-18 CIFAR-10 recipe (batch 32), stopped after ``--steps`` steps.
B: the textbook loop: ``TrainOneStepCell`` + ``nn.Momentum`` iterating the very same
``ms_suite.data.build_dataset`` pipeline (a full-size fake CIFAR-10 read by MindSpore's
Cifar10Dataset, with the recipe's crop/flip/normalise). Dataset sink would be the usual choice on
Ascend/GPU, but MindSpore refuses it on CPU (``mindspore.data_sink``: "Data sinking supports
ascend or gpu device target"; ``Model.train`` silently falls back to the iterator), so B iterates.
Runs alternate A B A B in one process; samples/s counts from the end of the first (compiling)
step to the end of the last, so everything the loop does per step is included.

    .venv/bin/python benchmarks/overhead.py [--steps 40] [--rounds 3] [--quick]
"""
from __future__ import annotations

import os
import tempfile
import time

from common import (QUICK_RESNET, LoadWatch, alternate, fake_cifar10, finish, median, parse_args, stop_after,
                    target)

RECIPE = "configs/resnet/resnet18_cifar10.yaml"
TARGET = 0.97


def add_arguments(parser) -> None:
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="A B pairs")


def suite_run(cfg, steps: int, workdir: str) -> float:
    from ms_suite import api

    timer = stop_after(steps)
    api.train(cfg, tempfile.mkdtemp(dir=workdir), callbacks=[timer], progress=False)
    return timer.samples_per_s(cfg.train.batch_size)


def bare_run(cfg, steps: int) -> float:
    from ms_suite.data import build_dataset, dataset_info
    from ms_suite.runtime import init_runtime
    from ms_steps import bare_train_step

    init_runtime(cfg.runtime, cfg.train.seed)
    classes = dataset_info(cfg.data).num_classes
    _, step = bare_train_step(cfg, classes)
    step.set_train(True)
    dataset = build_dataset(cfg.data, "train", cfg.train.batch_size, seed=cfg.train.seed)
    batches = dataset.create_tuple_iterator(num_epochs=1)
    step(*next(batches)).asnumpy()  # compiles
    start = time.perf_counter()
    for _ in range(steps - 1):
        loss = step(*next(batches))
    loss.asnumpy()
    return cfg.train.batch_size * (steps - 1) / (time.perf_counter() - start)


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    from ms_suite.config import load_config

    steps, rounds = (3, 1) if args.quick else (args.steps, args.rounds)
    load = LoadWatch(args.wait_quiet)
    with tempfile.TemporaryDirectory() as workdir:
        records = 1000 if args.quick else 10000  # Cifar10Dataset needs 10,000; --quick reads a subset in numpy
        data = fake_cifar10(os.path.join(workdir, "cifar"), records, test_records=64)
        overrides = [f"data.path={data}", "train.batch_size=32", "train.epochs=1", "runtime.compile_cache=false",
                     "eval.batch_size=64", *(QUICK_RESNET if args.quick else [])]
        cfg = load_config(RECIPE, overrides)
        found = alternate({"ms-suite Trainer": lambda: suite_run(cfg, steps, workdir),
                           "bare MindSpore loop": lambda: bare_run(cfg, steps)}, rounds, load)
    suite, bare = median(found["ms-suite Trainer"]), median(found["bare MindSpore loop"])
    rows = [[name, " ".join(f"{v:.2f}" for v in values), f"{median(values):.2f}"] for name, values in found.items()]
    finish(f"Suite overhead: ResNet-18 CIFAR-10, batch 32, {steps} steps per run, runs alternated",
           ["loop", "samples/s per run", "median"], rows,
           {"benchmark": "overhead", "quick": args.quick, "suite_samples_per_s": round(suite, 3),
            "bare_samples_per_s": round(bare, 3),
            "runs": {k: [round(v, 3) for v in values] for k, values in found.items()}, **target(suite / bare, TARGET)}, load,
           [f"ratio ms-suite / bare = {suite / bare:.3f} (target >= {TARGET})",
            "dataset sink: refused by MindSpore on CPU, both loops iterate the dataset"])


if __name__ == "__main__":
    main()
