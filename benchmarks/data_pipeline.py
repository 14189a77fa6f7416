"""Data pipeline speed: images/s per core for the CIFAR-10 binary and JPEG ImageFolder training
pipelines, and the share of step time spent waiting for data in real training runs.

Pipelines: ms-suite's ``build_dataset`` for the train split (read + decode + the recipe's
augmentation + normalise + batch), drained without training, with data.num_workers 1 and 2.
Inputs are generated: a full-size fake cifar-10-batches-bin (10,000 records per file: MindSpore's
Cifar10Dataset reads nothing else) and a few hundred 500x375 JPEGs (ImageNet's typical size).
Per core = images / CPU-seconds the whole process used (all MindData threads): divide the images/s
your devices consume by it to size a host's CPU (e.g. 8 Ascend cards x 2,000 img/s of ResNet-50).
Data-wait share: ``data_wait_share`` from a real run's summary.json (time blocked on the next
batch / step time), ResNet-18 on the CIFAR binaries and ResNet-50 on the JPEG folder (target < 5%).

    .venv/bin/python benchmarks/data_pipeline.py [--quick]
"""
from __future__ import annotations

import json
import os
import resource
import tempfile
import time
from typing import Dict, List, Tuple

from common import (QUICK_RESNET, LoadWatch, fake_cifar10, fake_imagefolder, finish, parse_args, progress, stop_after,
                    target)

TARGET = 0.05
PIPELINES = {  # name: (recipe, batch, images to drain)
    "CIFAR-10 binary": ("configs/resnet/resnet18_cifar10.yaml", 128, 25600),
    "JPEG ImageFolder": ("configs/resnet/resnet50_imagenet.yaml", 32, 960),
}
RUNS = {  # name: (pipeline, batch, steps)
    "ResNet-18, CIFAR-10 binary": ("CIFAR-10 binary", 32, 40),
    "ResNet-50, JPEG ImageFolder": ("JPEG ImageFolder", 16, 10),
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drain(data, batch: int, images: int) -> Tuple[float, float]:
    """(images/s, images per CPU-second) reading ``images`` through the train pipeline, epoch after epoch."""
    from ms_suite.data import build_dataset

    done, epoch = 0, 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    while done < images:
        for images_batch, _ in build_dataset(data, "train", batch, seed=0, epoch=epoch).create_tuple_iterator(
                num_epochs=1):
            done += images_batch.shape[0]
            if done >= images:
                break
        epoch += 1
    return done / (time.perf_counter() - wall), done / (cpu_seconds() - cpu)


def wait_share(cfg, steps: int, workdir: str) -> float:
    from ms_suite import api

    out = tempfile.mkdtemp(dir=workdir)
    api.train(cfg, out, callbacks=[stop_after(steps)], progress=False)
    with open(os.path.join(out, "summary.json")) as fh:
        return json.load(fh)["data_wait_share"]


def main() -> None:
    args = parse_args(__doc__)
    from ms_suite.config import load_config

    load = LoadWatch(args.wait_quiet)
    with tempfile.TemporaryDirectory() as workdir:
        progress("writing the fake CIFAR-10 binaries and JPEG folder ...")
        paths = {"CIFAR-10 binary": fake_cifar10(os.path.join(workdir, "cifar"), 1000 if args.quick else 10000,
                                                 test_records=64),
                 "JPEG ImageFolder": fake_imagefolder(os.path.join(workdir, "jpeg"), 64 if args.quick else 320)}

        def recipe(name: str, *overrides: str):
            path, _, _ = PIPELINES[name]
            return load_config(path, [f"data.path={paths[name]}", "runtime.compile_cache=false", "train.epochs=1",
                                      "eval.batch_size=32", *overrides])

        speeds: Dict[str, Dict[int, Tuple[float, float]]] = {}
        for name, (_, batch, images) in PIPELINES.items():
            speeds[name] = {}
            for workers in (1, 2):
                progress(f"draining {name} with {workers} worker(s) ...")
                data = recipe(name, f"data.num_workers={workers}").data
                speeds[name][workers] = load.run(f"{name} x{workers}", lambda: drain(
                    data, batch, max(images // 20, batch) if args.quick else images))
        shares: Dict[str, float] = {}
        for name, (pipeline, batch, steps) in RUNS.items():
            if args.quick and pipeline != "CIFAR-10 binary":
                continue
            steps = 3 if args.quick else steps
            progress(f"training {name} for {steps} steps ...")
            cfg = recipe(pipeline, f"train.batch_size={batch}", *(QUICK_RESNET if args.quick else []))
            shares[name] = load.run(name, lambda: wait_share(cfg, steps, workdir))
    rows: List[list] = [[name, workers, f"{wall:.0f}", f"{per_core:.0f}"]
                        for name, by_workers in speeds.items() for workers, (wall, per_core) in by_workers.items()]
    worst = max(shares.values())
    finish("Data pipelines (decode + augment + batch), drained without training",
           ["pipeline", "workers", "images/s", "images per CPU-second"], rows,
           {"benchmark": "data_pipeline", "quick": args.quick,
            "pipelines": {n: {str(w): {"images_per_s": round(a, 1), "images_per_cpu_s": round(b, 1)}
                              for w, (a, b) in v.items()} for n, v in speeds.items()},
            "data_wait_share": shares, **target(worst, TARGET, at_most=True)}, load,
           [f"data-wait share of step time, {name}: {100 * share:.2f}%" for name, share in shares.items()]
           + [f"target < {100 * TARGET:.0f}% (ratio = the worst run's share)"])


if __name__ == "__main__":
    main()
