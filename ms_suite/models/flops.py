"""FLOPs (2 x multiply-accumulates) and parameter counts, measured with PyNative forward hooks.

Convolutions and Dense layers are counted here. A family's cell with other heavy ops (attention
matmuls, a tied decoder) declares them in a ``flops(inputs, output) -> int`` method, which counts that
cell's own ops (its Dense/Conv children are counted on their own). Cells the suite does not define
(Golden Stick's quant wrappers) get a counter in :data:`FLOP_COUNTERS` from the module that uses them.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional, Tuple

import mindspore as ms
from mindspore import nn

from ms_suite.models.registry import create_model, model_info

FlopCounter = Callable[[nn.Cell, tuple, ms.Tensor], int]


def _conv2d_flops(cell: nn.Conv2d, inputs: tuple, output: ms.Tensor) -> int:
    cout, cin_per_group, kh, kw = cell.weight.shape  # weight already holds Cin / groups
    batch, _, hout, wout = output.shape
    return 2 * batch * cout * hout * wout * cin_per_group * kh * kw


def _dense_flops(cell: nn.Dense, inputs: tuple, output: ms.Tensor) -> int:
    rows = output.size // output.shape[-1]
    return 2 * rows * cell.in_channels * cell.out_channels


FLOP_COUNTERS: Dict[type, FlopCounter] = {nn.Conv2d: _conv2d_flops, nn.Dense: _dense_flops}


def _own_flops(cell: nn.Cell, inputs: tuple, output: ms.Tensor) -> int:
    return cell.flops(inputs, output)


def counter_for(cell: nn.Cell) -> Optional[FlopCounter]:
    if callable(getattr(cell, "flops", None)):
        return _own_flops
    for cls in type(cell).__mro__:
        if cls in FLOP_COUNTERS:
            return FLOP_COUNTERS[cls]
    return None


def count_flops(net: nn.Cell, input_shape: Tuple[int, ...]) -> int:
    """FLOPs of one eval-mode forward pass on a zero batch of one, ``input_shape`` without batch.

    Switches to PyNative mode (hooks need it) and restores the previous mode and train flag.
    """
    total = [0]

    def hook(counter: FlopCounter) -> Callable:
        def fn(cell: nn.Cell, inputs: tuple, output: ms.Tensor) -> None:
            total[0] += int(counter(cell, inputs, output))
        return fn

    prev_mode, was_training = ms.get_context("mode"), net.training
    ms.set_context(mode=ms.PYNATIVE_MODE)
    handles = [cell.register_forward_hook(hook(counter)) for _, cell in net.cells_and_names()
               if (counter := counter_for(cell)) is not None]
    try:
        net.set_train(False)
        net(ms.ops.zeros((1, *input_shape), ms.float32))
    finally:
        for handle in handles:
            handle.remove()
        net.set_train(was_training)
        ms.set_context(mode=prev_mode)
    return total[0]


def count_params(net: nn.Cell) -> int:
    """Number of trainable parameter elements (torch's ``sum(p.numel() for p in parameters())``)."""
    return int(sum(p.size for p in net.trainable_params()))


def measure_model(name: str) -> Dict[str, int]:
    """Params and forward FLOPs of a registered model at its default input size.

    Random initialisation dominates the cost for big models (BERT-large: ~20 s of it), and
    neither figure depends on the values, so the model is built without initialising its
    parameters and then filled with zeros (cheap, lazily allocated memory).
    """
    import numpy as np
    from mindspore.nn.utils import no_init_parameters

    with no_init_parameters():
        net = create_model(name)
    for param in net.get_parameters():
        param.set_data(ms.Tensor(np.zeros(param.shape, ms.dtype_to_nptype(param.dtype))))
    return {"params": count_params(net), "flops": count_flops(net, model_info(name).input_size)}
