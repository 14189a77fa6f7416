"""One msrun rank of the gradient all-reduce micro-benchmark (run by dp_scaling.py, not by hand).

Every rank all-reduces tensors shaped like the trainable parameters of a model (default ResNet-18,
CIFAR stem: 62 tensors, 44.7 MB in float32), the way a data-parallel step does, and times:

- ``eager per tensor``: one ``ops.AllReduce`` per gradient, PyNative;
- ``eager one buffer``: the gradients packed into one flat buffer, one ``ops.AllReduce`` (and
  ``eager 4 KB`` / ``eager 4.5 MB``: the first 1024 / tenth of its floats: fixed vs per-byte cost);
- ``graph reducer``: ``nn.DistributedGradReducer`` (compiled; what TrainStep runs by default),
  and the same with its ``fusion`` attribute off (shows whether the backend fuses at all);
- ``graph per tensor`` / ``graph N bucket(s)``: the suite's ``BucketedGradReducer``, one
  AllReduce per gradient or the gradients packed into N flat buffers, in float32 and float16
  (MindSpore 2.7.2's CPU AllReduce kernel takes float32 and float16 only, not bfloat16);
- ``memcpy``: ``np.copyto`` of the same bytes within this process, the memory-copy bound.

Rank 0 prints one JSON line: ``{"bytes", "tensors", "seconds": {case: median}, "same_bits_as_reducer"}``.

    msrun --worker_num=2 --local_worker_num=2 --bind_core='{"device0": ["0"], "device1": ["1"]}' \
        --join=True python benchmarks/allreduce_time.py [--model resnet18_cifar] [--calls 10]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Callable, Dict, List, Sequence

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def median_seconds(fn: Callable[[], object], calls: int) -> float:
    """Median wall time of ``fn`` over ``calls`` calls after two warm-up calls."""
    for _ in range(2):
        fn()
    times: List[float] = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def gradient_like(model: str) -> List[np.ndarray]:
    """Random float32 arrays shaped like ``model``'s trainable parameters."""
    from ms_suite.models import create_model

    net = create_model(model, num_classes=10)
    rng = np.random.default_rng(0)
    return [rng.standard_normal(p.shape).astype(np.float32) for p in net.trainable_params()]


def graph_cases(grads: Sequence, params) -> Dict[str, Callable[[], object]]:
    """The compiled reducers: MindSpore's DistributedGradReducer (fused by its ``fusion`` attribute,
    and with fusion off) and the suite's BucketedGradReducer in float32/float16, per tensor or packed."""
    from mindspore import nn

    from ms_suite.engine.grad_reduce import build_grad_reducer

    reducers = {"graph reducer": build_grad_reducer(params),
                "graph reducer fusion off": nn.DistributedGradReducer(params, fusion_type=0),
                "graph per tensor": build_grad_reducer(params, "float32", 0),
                "graph 1 bucket": build_grad_reducer(params, "float32", 1),
                "graph 4 buckets": build_grad_reducer(params, "float32", 4),
                "graph per tensor float16": build_grad_reducer(params, "float16", 0),
                "graph 1 bucket float16": build_grad_reducer(params, "float16", 1)}
    tup = tuple(grads)
    return {name: (lambda r=reducer: [g.asnumpy() for g in r(tup)]) for name, reducer in reducers.items()}


def same_bits(cases: Dict[str, Callable[[], List[np.ndarray]]]) -> Dict[str, bool]:
    """Whether each float32 graph case returns the default reducer's bits."""
    reference = cases["graph reducer"]()
    return {name: all(np.array_equal(a, b) for a, b in zip(reference, fn()))
            for name, fn in cases.items() if name.startswith("graph") and "float16" not in name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18_cifar")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    import mindspore as ms
    from mindspore import ParameterTuple, Parameter, Tensor, ops
    from mindspore.communication import get_group_size, get_rank, init

    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    init()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True,
                                 device_num=get_group_size())
    arrays = gradient_like(args.model)
    grads = [Tensor(a) for a in arrays]
    params = ParameterTuple([Parameter(Tensor(a), name=f"p{i}") for i, a in enumerate(arrays)])
    src = np.concatenate([a.ravel() for a in arrays])
    dst, flat = np.empty_like(src), Tensor(src)
    small, tenth = Tensor(src[:1024].copy()), Tensor(src[:src.size // 10].copy())
    all_reduce = ops.AllReduce()
    cases = {"memcpy": lambda: np.copyto(dst, src),
             "eager 4 KB": lambda: all_reduce(small).asnumpy(),
             "eager 4.5 MB": lambda: all_reduce(tenth).asnumpy(),
             "eager one buffer": lambda: all_reduce(flat).asnumpy(),
             "eager per tensor": lambda: [all_reduce(g).asnumpy() for g in grads],
             **graph_cases(grads, params)}
    equal = same_bits(cases)
    seconds = {name: round(median_seconds(fn, args.calls), 5) for name, fn in cases.items()}
    if get_rank() == 0:
        print(json.dumps({"bytes": int(src.nbytes), "tensors": len(arrays), "seconds": seconds,
                          "same_bits_as_reducer": equal}), flush=True)


if __name__ == "__main__":
    main()
