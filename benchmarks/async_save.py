"""What checkpointing costs the training step: synchronous writes against ``checkpoint.async_save``.

Runs the recipe's compiled train step (``ms_steps.build``, a fixed in-memory batch) for ``--steps``
steps three ways, alternating rounds: no checkpoints; ``CheckpointManager.save`` every
``--every`` steps as the trainer does by default (the step waits for the write); and with
``async_save`` (the step waits for a host copy of the parameters, one background thread writes).
It reports the median step time of each way and what saving adds per step, and the time the training
thread spends inside ``save()`` (the part a busy machine does not blur: on 2 shared cores the
per-step differences drown in other processes' load, so the target is on this blocking time).

    .venv/bin/python benchmarks/async_save.py -c configs/resnet/resnet18_cifar10.yaml --batch 32 \\
        --steps 40 --every 5 --rounds 3

Target: an async save blocks the training thread at most half as long as a synchronous one.
"""
from __future__ import annotations

import os
import tempfile
import time
from typing import Callable, Dict, List

from common import LoadWatch, QUICK_RESNET, alternate, finish, median, parse_args, progress, target
from ms_steps import build, random_batch

GOAL = 0.5  # ratio: time inside save(), async / sync


def add_arguments(parser) -> None:
    parser.add_argument("-c", "--config", default="configs/resnet/resnet18_cifar10.yaml")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round")
    parser.add_argument("--every", type=int, default=5, help="save every N steps")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides")


def make_run(step: Callable[[], object], cell, every: int, steps: int, mode: str, folder: str,
             inside_save: List[float]) -> Callable[[], float]:
    """A round of ``steps`` steps saving every ``every`` (mode none/sync/async); returns s per step."""
    from ms_suite.checkpoint import CheckpointManager

    def run() -> float:
        manager = None if mode == "none" else CheckpointManager(os.path.join(folder, mode), keep_last=2,
                                                                 async_save=mode == "async")
        start = time.perf_counter()
        for index in range(1, steps + 1):
            step()
            if manager and index % every == 0:
                before = time.perf_counter()
                manager.save(cell, index, {"step": index})
                inside_save.append(time.perf_counter() - before)
        if manager:
            manager.flush()  # the last write counts too
        return (time.perf_counter() - start) / steps

    return run


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    from mindspore import Tensor

    from ms_suite.config import load_config
    from ms_suite.models import model_info
    from ms_suite.runtime import init_runtime

    settings = args.set + (QUICK_RESNET if args.quick else [])
    steps, every, rounds = (6, 3, 1) if args.quick else (args.steps, args.every, args.rounds)
    cfg = load_config(args.config, settings)
    info = model_info(cfg.model.name)
    classes = cfg.model.num_classes or info.num_classes
    init_runtime(cfg.runtime, cfg.train.seed)
    # The LR table covers every step run here (its length is part of the checkpoint's size).
    net, train_step = build(cfg, info.task, tuple(info.input_size), classes, 1 + 3 * rounds * steps)
    batch = tuple(Tensor(a) for a in random_batch(info.task, tuple(info.input_size), args.batch, classes))
    train_step.set_train(True)

    def one_step():
        return train_step(True, *batch)[0].asnumpy()

    progress("compiling the step ...")
    one_step()
    load = LoadWatch(args.wait_quiet)
    inside: Dict[str, List[float]] = {"sync": [], "async": []}
    with tempfile.TemporaryDirectory() as folder:
        runs = {mode: make_run(one_step, train_step, every, steps, mode, folder, inside.get(mode, []))
                for mode in ("none", "sync", "async")}
        per_step = alternate(runs, rounds, load)
        size_mb = os.path.getsize(max(_files(os.path.join(folder, "sync")))) / 1e6
    step_s = {mode: median(values) for mode, values in per_step.items()}
    extra = {mode: step_s[mode] - step_s["none"] for mode in ("sync", "async")}
    rows = [(mode, f"{1000 * step_s[mode]:.1f}", f"{1000 * extra.get(mode, 0.0):+.1f}",
             f"{1000 * median(inside[mode]):.1f}" if mode in inside else "-") for mode in ("none", "sync", "async")]
    ratio = median(inside["async"]) / median(inside["sync"])
    result = {"benchmark": "async_save", "model": cfg.model.name, "batch": args.batch, "steps": steps,
              "save_every": every, "rounds": rounds, "checkpoint_mb": round(size_mb, 1),
              **{f"step_ms_{m}": round(1000 * v, 2) for m, v in step_s.items()},
              **{f"save_call_ms_{m}": round(1000 * median(v), 2) for m, v in inside.items()},
              **target(ratio, GOAL, at_most=True), "quick": args.quick, "settings": settings}
    finish(f"checkpoint writes every {every} steps, {cfg.model.name} batch {args.batch}, {size_mb:.1f} MB per "
           f"checkpoint (median of {rounds} rounds x {steps} steps)",
           ["writes", "ms/step", "added ms/step", "ms inside save()"], rows, result, load)


def _files(folder: str) -> List[str]:
    return [os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".ckpt")]


if __name__ == "__main__":
    main()
