"""Time MindCV 0.3.0's own train step on a fixed batch, in this process (MindCV's environment).

``vs_mindcv.py`` runs this with the Python of a separate MindCV virtualenv
(``MS_SUITE_MINDCV_PYTHON``), so it imports only numpy, MindSpore and MindCV, never ms-suite.
The step is what MindCV's training script builds: ``create_model`` + ``create_loss`` +
``create_optimizer`` + ``create_trainer``, whose ``mindspore.Model`` holds the compiled train
network (``Model.train_network``: ``TrainOneStepCell`` for a fixed loss scale of 1 without
overflow checks). It is fed the batch in ``--inputs`` (written by ``vs_mindcv.py``, so both
contenders see the same numbers).

    $MS_SUITE_MINDCV_PYTHON benchmarks/mindcv_steps.py --arch resnet18 --inputs batch.npz --steps 10

Prints one JSON line: per-step seconds, samples/s and compile time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Callable, List

import numpy as np


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--arch", required=True, help="MindCV model name (resnet18, resnet50)")
    parser.add_argument("--inputs", required=True, help=".npz with 'images' (N,C,H,W float32) and 'labels' (N int32)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after the compiling one)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the compiling one")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    parser.add_argument("--pynative", action="store_true", help="PyNative mode (--quick runs)")
    return parser.parse_args()


def build_step(args: argparse.Namespace, total_steps: int) -> Callable:
    """MindCV's train network, as its ``train.py`` builds it for momentum SGD in fp32."""
    from mindcv.loss import create_loss
    from mindcv.models import create_model
    from mindcv.optim import create_optimizer
    from mindcv.utils import create_trainer
    from mindspore import nn

    net = create_model(args.arch, num_classes=args.num_classes, pretrained=False)
    loss = create_loss("CE", label_smoothing=args.label_smoothing)
    # A per-step lr list, as MindCV's schedulers give (so both steps look the lr up by step).
    optimizer = create_optimizer(net, opt="momentum", lr=[args.lr] * total_steps, weight_decay=args.weight_decay,
                                 momentum=args.momentum, weight_decay_filter="norm_and_bias")
    model = create_trainer(net, loss, optimizer, metrics={"top1": nn.Top1CategoricalAccuracy()}, amp_level="O0",
                           amp_cast_list=None, loss_scale_type="fixed", loss_scale=1.0, drop_overflow_update=False)
    step = model.train_network
    step.set_train(True)
    return step


def timed(run: Callable[[], object], steps: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    args = parse_args()
    import mindcv
    import mindspore as ms
    from mindspore import Tensor

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE if args.pynative else ms.GRAPH_MODE)
    ms.set_seed(42)
    arrays = np.load(args.inputs)
    images, labels = Tensor(arrays["images"]), Tensor(arrays["labels"])
    step = build_step(args, args.steps + args.warmup + 1)

    def run() -> None:
        step(images, labels).asnumpy()

    start = time.perf_counter()
    run()
    compile_s = time.perf_counter() - start
    times = timed(run, args.steps, args.warmup)
    step_s = statistics.median(times)
    print(json.dumps({"arch": args.arch, "batch": int(images.shape[0]), "input_shape": list(images.shape[1:]),
                      "mindcv": mindcv.__version__, "mindspore": ms.__version__, "compile_s": round(compile_s, 3),
                      "step_s": [round(t, 5) for t in times], "median_step_s": round(step_s, 5),
                      "samples_per_s": round(images.shape[0] / step_s, 3)}), flush=True)


if __name__ == "__main__":
    main()
