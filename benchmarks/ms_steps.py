"""Time ms-suite's compiled train (or inference) step on in-memory random batches, in this process.

The step is what ``Trainer`` compiles for the recipe (the task's model and loss, the recipe's
optimizer, ``TrainStep`` with its loss scaling and clipping), fed a fixed batch, so the figure is
the model's speed without any data pipeline. ``throughput.py`` and ``vs_pytorch.py`` run this in
a fresh process per model and setting: MindSpore's thread, affinity and fusion settings hold for
a whole process.

    .venv/bin/python benchmarks/ms_steps.py -c configs/resnet/resnet18_cifar10.yaml --batch 32 \\
        --mode train --steps 20 --set runtime.num_threads=2

Prints one JSON line: per-step seconds, samples/s, compile time and (``--flops``) model FLOPs per sample.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Tuple

import numpy as np

from common import median, parse_args, print_json, timed_calls

MASKED_FRACTION = 0.15  # BERT pretraining predicts ceil(15% of the tokens), as prepare-data bert writes


def add_arguments(parser) -> None:
    parser.add_argument("-c", "--config", required=True, help="recipe whose model, optimizer and runtime to use")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--mode", choices=("train", "infer"), default="train")
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after the compiling one)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the compiling one")
    parser.add_argument("--input-shape", type=int, nargs="+", help="per-sample input shape (default: the model's)")
    parser.add_argument("--inputs", metavar="NPZ", help="image models: take the batch from this .npz ('images', "
                        "'labels') instead of random numbers (vs_mindcv.py feeds both contenders one file)")
    parser.add_argument("--flops", action="store_true", help="also count the model FLOPs per sample")
    parser.add_argument("--bare", action="store_true",
                        help="a bare MindSpore step instead (TrainOneStepCell + Momentum; image models)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="recipe overrides")


def random_batch(task: str, shape: Tuple[int, ...], batch: int, num_classes: int, vocab: int = 0) -> tuple:
    """One batch of the columns ``task``'s loss cell takes."""
    rng = np.random.default_rng(0)
    if task == "image-classification":
        return (rng.random((batch, *shape), dtype=np.float32),
                rng.integers(0, num_classes, batch).astype(np.int32))
    if task == "bert-pretraining":
        seq = shape[0]
        predictions = math.ceil(seq * MASKED_FRACTION)
        ids = rng.integers(5, vocab, (batch, seq)).astype(np.int32)
        return (ids, np.ones_like(ids), np.zeros_like(ids), rng.integers(0, 2, (batch, 1)).astype(np.int32),
                np.sort(rng.choice(np.arange(1, seq), (batch, predictions)), axis=1).astype(np.int32),
                rng.integers(5, vocab, (batch, predictions)).astype(np.int32),
                np.ones((batch, predictions), np.float32))
    raise SystemExit(f"ms_steps.py: no random batch for task {task!r}")


def batch_from_file(path: str) -> tuple:
    """(images, labels) from an .npz written by ``vs_mindcv.py``."""
    arrays = np.load(path)
    return arrays["images"].astype(np.float32), arrays["labels"].astype(np.int32)


def forward_flops(net, task: str, shape: Tuple[int, ...]) -> int:
    """FLOPs of one sample's forward pass. BERT pretraining runs its MLM head only at the masked
    positions, so the head's share (counted at every position) is scaled down to them."""
    from ms_suite.models.flops import count_flops

    total = count_flops(net, shape)
    if task != "bert-pretraining":
        return total
    backbone = count_flops(net.bert, shape)
    predictions = math.ceil(shape[0] * MASKED_FRACTION)
    return backbone + (total - backbone) * predictions // shape[0]


def build(cfg, task_name: str, shape: Tuple[int, ...], num_classes: int, total_steps: int):
    """(model, train step) as ``Trainer._setup`` builds them, without a dataset."""
    from ms_suite.data import DatasetInfo
    from ms_suite.engine.optim import build_lr_schedule
    from ms_suite.engine.optim import build_optimizer
    from ms_suite.engine.tasks import get_task
    from ms_suite.engine.train_step import TrainStep

    task = get_task(task_name)
    info = DatasetInfo(num_classes, shape, {"train": 0, "eval": 0})  # no data: BERT skips its data checks
    net, classes = task.build_model(cfg, info)
    lr = build_lr_schedule(cfg.train, total_steps, cfg.train.lr)
    optimizer = build_optimizer(net, cfg.train, lr)
    step = TrainStep(task.loss_cell(net, cfg, classes), optimizer, loss_scale=cfg.train.loss_scale,
                     scale_value=cfg.train.loss_scale_value, clip_norm=cfg.train.clip_grad_norm)
    return net, step


def bare_train_step(cfg, num_classes: int):
    """(model, step): the textbook MindSpore loop's ``TrainOneStepCell`` with the recipe's SGD settings
    (one weight decay for all parameters, constant lr); ``step(images, labels) -> loss``."""
    from mindspore import nn

    from ms_suite.models import create_model

    net = create_model(cfg.model.name, num_classes=num_classes, **cfg.model.kwargs)
    loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=cfg.train.lr, momentum=cfg.train.momentum,
                            weight_decay=cfg.train.weight_decay, use_nesterov=cfg.train.nesterov)
    return net, nn.TrainOneStepCell(loss, optimizer)


def step_fn(args, cfg, task_name: str, shape: Tuple[int, ...], num_classes: int) -> Tuple[Callable, object]:
    """A blocking call running one step, and the model."""
    from mindspore import Tensor

    if args.bare:
        net, step = bare_train_step(cfg, num_classes)
    else:
        net, step = build(cfg, task_name, shape, num_classes, args.steps + args.warmup + 1)
    vocab = getattr(getattr(net, "config", None), "vocab_size", 0)
    arrays = batch_from_file(args.inputs) if args.inputs else random_batch(task_name, shape, args.batch,
                                                                            num_classes, vocab)
    batch = tuple(Tensor(a) for a in arrays)
    if args.bare:
        step.set_train(True)
        return lambda: step(*batch).asnumpy(), net
    if args.mode == "train":
        step.set_train(True)
        return lambda: step(True, *batch)[0].asnumpy(), net
    net.set_train(False)
    inputs = batch[:1] if task_name == "image-classification" else batch[:3]

    def infer():
        out = net(*inputs)
        return [o.asnumpy() for o in (out if isinstance(out, tuple) else (out,))]

    return infer, net


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    from ms_suite.config import load_config
    from ms_suite.models import model_info
    from ms_suite.runtime import init_runtime

    cfg = load_config(args.config, args.set)
    info = model_info(cfg.model.name)
    shape = tuple(args.input_shape or info.input_size)
    num_classes = cfg.model.num_classes or info.num_classes
    runtime = init_runtime(cfg.runtime, cfg.train.seed)
    run, net = step_fn(args, cfg, info.task, shape, num_classes)
    start = time.perf_counter()
    run()
    compile_s = time.perf_counter() - start
    times = timed_calls(run, args.steps, args.warmup)
    step_s = median(times)
    result = {"model": cfg.model.name, "mode": args.mode, "batch": args.batch, "input_shape": list(shape),
              "device": runtime.device, "settings": args.set, "bare": args.bare, "compile_s": round(compile_s, 3),
              "step_s": [round(t, 5) for t in times], "median_step_s": round(step_s, 5),
              "samples_per_s": round(args.batch / step_s, 3)}
    if args.flops:
        result["forward_flops_per_sample"] = forward_flops(net, info.task, shape)
    print_json(result)


if __name__ == "__main__":
    main()
