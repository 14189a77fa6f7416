"""The ImageNet-stem max pool on MindSpore's CPU kernels: how fast each form trains, and whether its
gradient is right on every call.

torch's ``MaxPool2d(3, 2, padding=1)`` on post-ReLU activations, forward + backward, compiled (graph
mode), in four forms: ``ZeroPad2d(1)`` + a valid ``MaxPool2d(3, 2)``; ``MaxPool2d``'s own padding
(``pad_mode="pad"``); the suite's ``ZeroPaddedMaxPool`` (zeros concatenated in training); and, for
scale, MindCV's ``pad_mode="same"`` (TensorFlow's windows: bottom/right padding only). Each
form's input gradient is compared on several calls of one compiled graph with the same form's
gradient in PyNative mode, bit for bit (``exact_every_call``). Timings alternate the forms in one
process (median of ``--calls``), so only their ratios mean something.

    .venv/bin/python benchmarks/stem_pool.py [--calls 15] [--quick]
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List

import numpy as np

from common import LoadWatch, finish, median, parse_args, progress

SHAPES = {"ResNet at 64x64": (32, 64, 32, 32), "ResNet at 224x224": (32, 64, 112, 112)}


def add_arguments(parser) -> None:
    parser.add_argument("--calls", type=int, default=15, help="timed calls per form and shape")


def pool_forms() -> Dict[str, Callable[[], object]]:
    """Builders of each form, in training mode."""
    from mindspore import nn

    from model_zoo.resnet import ZeroPaddedMaxPool

    return {"ZeroPad2d + valid MaxPool2d": lambda: nn.SequentialCell(nn.ZeroPad2d(1), nn.MaxPool2d(3, 2)),
            'MaxPool2d(pad_mode="pad")': lambda: nn.MaxPool2d(3, 2, pad_mode="pad", padding=1),
            "ZeroPaddedMaxPool (suite)": lambda: ZeroPaddedMaxPool().set_train(True),
            'MaxPool2d(pad_mode="same") (MindCV)': lambda: nn.MaxPool2d(3, 2, pad_mode="same")}


def input_gradient(make_pool: Callable[[], object]):
    """A cell returning d(sum(pool(relu(x)) * weights))/dx."""
    from mindspore import nn, ops

    class Loss(nn.Cell):
        def __init__(self):
            super().__init__()
            self.relu, self.pool = nn.ReLU(), make_pool()

        def construct(self, x, weights):
            return (self.pool(self.relu(x)) * weights).sum()

    class Gradient(nn.Cell):
        def __init__(self):
            super().__init__()
            self.loss, self.grad = Loss(), ops.GradOperation()

        def construct(self, x, weights):
            return self.grad(self.loss)(x, weights)

    return Gradient()


def batches(shape, count: int) -> List[tuple]:
    """``count`` (input, output weights) pairs for ``shape``."""
    import mindspore as ms

    rng = np.random.default_rng(0)
    n, c, h, w = shape
    out = (n, c, (h - 1) // 2 + 1, (w - 1) // 2 + 1)
    return [(ms.Tensor(rng.standard_normal(shape), ms.float32), ms.Tensor(rng.standard_normal(out), ms.float32))
            for _ in range(count)]


def exact_every_call(make_pool, shape) -> bool:
    """The compiled gradient equals the PyNative one, bit for bit, on each of three calls."""
    import mindspore as ms

    data = batches(shape, 3)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    eager = input_gradient(make_pool)
    reference = [eager(*pair).asnumpy() for pair in data]
    ms.set_context(mode=ms.GRAPH_MODE)
    compiled = input_gradient(make_pool)
    return all(np.array_equal(compiled(*pair).asnumpy(), ref) for pair, ref in zip(data, reference))


def timings(forms, shape, calls: int, load: LoadWatch) -> Dict[str, float]:
    """Median seconds per compiled forward + backward, the forms alternating call by call."""
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    x, weights = batches(shape, 1)[0]
    cells = {name: input_gradient(make) for name, make in forms.items()}
    for cell in cells.values():
        cell(x, weights).asnumpy()  # compile

    def measure() -> Dict[str, List[float]]:
        seconds: Dict[str, List[float]] = {name: [] for name in cells}
        for _ in range(calls):
            for name, cell in cells.items():
                start = time.perf_counter()
                cell(x, weights).asnumpy()
                seconds[name].append(time.perf_counter() - start)
        return seconds

    return {name: median(values) for name, values in load.run(f"{shape}", measure).items()}


def main() -> None:
    args = parse_args(__doc__, add_arguments)
    shapes = {"tiny": (2, 4, 9, 9)} if args.quick else SHAPES
    calls = 2 if args.quick else args.calls
    forms = pool_forms()
    load = LoadWatch(args.wait_quiet)
    seconds, exact = {}, {}
    for label, shape in shapes.items():
        progress(f"{label} {shape} ...")
        seconds[label] = timings(forms, shape, calls, load)
        exact[label] = {name: exact_every_call(make, shape) for name, make in forms.items()}
    baseline, suite = "ZeroPad2d + valid MaxPool2d", "ZeroPaddedMaxPool (suite)"
    rows = [[label, name, f"{s * 1000:.1f}", f"{seconds[label][baseline] / s:.2f}x", exact[label][name]]
            for label in seconds for name, s in seconds[label].items()]
    last = list(shapes)[-1]
    finish("ImageNet-stem max pool, compiled forward + backward (post-ReLU input)",
           ["input", "form", "ms", "speed vs ZeroPad2d", "gradient exact on every call"], rows,
           {"benchmark": "stem_pool", "quick": args.quick,
            "speedup": round(seconds[last][baseline] / seconds[last][suite], 4),
            "ms": {label: {name: round(s * 1000, 2) for name, s in by_form.items()}
                   for label, by_form in seconds.items()},
            "exact_every_call": exact},
           load, [f"speedup = {baseline} / the suite's form at {last}"])


if __name__ == "__main__":
    main()
