"""Every adaptation the suite makes to Golden Stick 1.3.0 on MindSpore 2.7.2, in one place.

Each block says why it exists and what showed it is needed. Where an adaptation replaces a
device kernel, the replacement runs on every device so CPU and GPU/Ascend runs share one code path.

CPU gaps handled elsewhere, listed here so this file stays the index:

* ``FakeQuantParam`` (what ``SimQAT.convert``/``SLB.convert`` insert) has no CPU kernel, so the
  compressed network is evaluated in its fake-quant form, before ``convert``
  (``pipeline.compress``); the report says so.
* SLB's activation quantizer uses ``MinMaxUpdatePerLayer`` (no CPU kernel):
  ``compression.slb.enable_act_quant`` is refused on CPU up front (``quantization.SLB.check``).
* SCOP's physical-prune step (``PrunerFtCompressAlgo._pruning_conv``) is private and written for
  Bottleneck blocks whose caller fills in ``in_index``; on the zoo's ResNet-18 it fails with "The
  'MaskedConv2dbn' object has no attribute 'in_index'". The suite removes channels itself
  (``pruning.remove_block_channels``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import sys
from typing import Iterator, Tuple

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.dtype import QuantDtype
from mindspore_gs.quantization.fake_quantizer import LinearFakeQuantizer
from mindspore_gs.quantization.layer_policy import PerChannelArgs
from mindspore_gs.quantization.quant_utils import get_quant_dtype_num_bits
from mindspore_gs.quantization.simulated_quantization import SimulatedQuantizationAwareTraining
from mindspore_gs.quantization.slb.slb_fake_quantizer import SlbFakeQuantizerPerLayer
from mindspore_gs.quantization.slb.slb_quant import Conv2dSlbQuant
from mindspore_gs.quantization.simulated_quantization.simulated_quantization_layer_policy import (
    ActLayerPolicy, ConvBnLayerPolicy, ConvLayerPolicy, DenseLayerPolicy)
from mindspore_gs.quantization.simulated_quantization.simulated_quantization_net_policy import SimulatedNetPolicy


# ------------------------------------------------------------------ mindspore.rewrite (SimQAT, SLB apply)

@contextlib.contextmanager
def rewrite_workspace(net: nn.Cell, directory: str) -> Iterator[None]:
    """Let ``mindspore.rewrite`` (used by every QAT ``apply``) rebuild ``net`` cleanly.

    Why: rewrite writes the rebuilt network's source to ``./rewritten_network/`` and imports the
    original classes from it. When a class's package root is not on ``sys.path`` (an editable
    install puts none there), it falls back to ``sys.path.insert(0, '<pkg dir>')`` plus
    ``from resnet import BasicBlock``, importing ``model_zoo/resnet.py`` a second time under another
    name; the registry then fails with "model 'resnet18' is registered twice". Putting each
    package root on ``sys.path`` makes rewrite import ``model_zoo.resnet`` itself. The sources go to
    ``directory`` (the run directory) instead of the caller's working directory, and ``sys.path``
    is restored afterwards (the generated modules insert entries of their own).
    """
    saved_path, saved_cwd = list(sys.path), os.getcwd()
    sys.path.extend(root for root in _package_roots(net) if root not in sys.path)
    os.makedirs(directory, exist_ok=True)
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        sys.path[:] = saved_path


def _package_roots(net: nn.Cell) -> set:
    """Folders from which each cell class's module imports under its own dotted name."""
    roots = set()
    for _, cell in net.cells_and_names():
        module = inspect.getmodule(type(cell))
        path = getattr(module, "__file__", None)
        if not path or module.__name__ == "__main__":
            continue
        depth = module.__name__.count(".") + (2 if os.path.basename(path) == "__init__.py" else 1)
        root = os.path.abspath(path)
        for _ in range(depth):
            root = os.path.dirname(root)
        roots.add(root)
    return roots


# ------------------------------------------------------------------ SimQAT fake quantizer

class MinMaxFakeQuantizer(LinearFakeQuantizer):
    """Linear fake quantizer: min/max observer, round and clamp, and a straight-through gradient.
    Plugged into SimQAT through its layer policies (below).

    Why: SimQAT's quantizers call ``MinMaxUpdatePerLayer``/``MinMaxUpdatePerChannel`` and
    ``FakeQuantPerLayer``/``FakeQuantPerChannel``, which have no CPU kernel ("Unsupported op
    [MinMaxUpdatePerLayer] on CPU"). This class reproduces the GPU kernels' arithmetic for SimQAT's
    settings (no EMA: the range is the last training batch's, widened to include 0; nudged zero
    point; gradient 1 inside the range and 0 outside) and keeps Golden Stick's interface
    (``mins``/``maxs``/``num_bits``...), so ``convert`` still emits ``FakeQuantParam`` nodes.

    The arithmetic runs as two numpy kernels inside the graph (``ops.Custom`` pyfunc, see
    :class:`_NumpyFakeQuant`): written with MindSpore's CPU element-wise ops it took ~10 full-size
    kernels forward and more backward, and clamping against per-channel bounds broadcast from
    shape (C, 1, 1, 1) is a slow path of those kernels (the gradient also reduces back onto the
    bounds), which made a SimQAT step about 10x the float step. numpy does the same IEEE float32
    operations in the same order, so the results are bit-identical.
    """

    def __init__(self, num_bits: int = 8, symmetric: bool = False, narrow_range: bool = False,
                 num_channels: int = 0):
        super().__init__()
        self._num_bits, self._symmetric, self._narrow_range = num_bits, symmetric, narrow_range
        self._per_channel = num_channels > 0  # channels on axis 0, as SimQAT's Conv2d/Dense cells ask
        shape = (num_channels if self._per_channel else 1,)
        self._float_min = Parameter(Tensor(np.full(shape, -6.0, np.float32)), name="float_min", requires_grad=False)
        self._float_max = Parameter(Tensor(np.full(shape, 6.0, np.float32)), name="float_max", requires_grad=False)
        # The GPU kernels work in the unsigned domain [quant_min, quant_max] with a zero point.
        grid = _Grid(1.0 if narrow_range else 0.0, float(2 ** num_bits - 1), symmetric)
        kernels = _NumpyFakeQuant(grid, shape[0])
        self._observe_and_quantize, self._quantize = kernels.observe_and_quantize, kernels.quantize

    def construct(self, x):
        if self.training:
            out, low, high = self._observe_and_quantize(x)
            out = ops.depend(out, ops.assign(self._float_min, low))
            return ops.depend(out, ops.assign(self._float_max, high))
        return self._quantize(x, self._float_min, self._float_max)

    def mins(self) -> list:
        return self._float_min.asnumpy().tolist()

    def maxs(self) -> list:
        return self._float_max.asnumpy().tolist()

    def num_bits(self) -> int:
        return self._num_bits

    def narrow_range(self) -> bool:
        return self._narrow_range

    def symmetric(self) -> bool:
        return self._symmetric

    def quant_dtype(self) -> QuantDtype:
        return QuantDtype.INT8

    def is_per_channel(self) -> bool:
        return self._per_channel

    def channel_axis(self) -> int:
        return 0 if self._per_channel else -1

    def extend_repr(self) -> str:
        return (f"bit_num={self._num_bits}, symmetric={self._symmetric}, narrow_range={self._narrow_range}, "
                f"per_channel={self._per_channel}")


@dataclasses.dataclass(frozen=True)
class _Grid:
    """The integer grid [quant_min, quant_max] and whether the range is made symmetric around 0."""

    quant_min: float
    quant_max: float
    symmetric: bool

    def bounds(self, low: np.ndarray, high: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(scale, lowest, highest representable value) per row for observed ranges ``low``/``high``
        of shape (rows, 1): the GPU kernels' nudged zero point."""
        if self.symmetric:
            high = np.maximum(-low, high)
            low = -high
        scale = np.maximum((high - low) / np.float32(self.quant_max - self.quant_min), np.float32(1e-12))
        zero_point = np.clip(np.round(np.float32(self.quant_min) - low / scale), self.quant_min, self.quant_max)
        return scale, (np.float32(self.quant_min) - zero_point) * scale, (np.float32(self.quant_max) - zero_point) * scale


class _NumpyFakeQuant:
    """The fake quantizer's forward and straight-through backward as in-graph numpy kernels.

    Tensors are viewed as (rows, -1): one row per channel (axis 0) for per-channel ranges, a
    single row otherwise. ``observe_and_quantize(x) -> (fake-quantized x, min, max)`` observes
    the range of ``x`` (widened to include 0); ``quantize(x, min, max)`` uses a given range.
    Both pass the gradient through where ``x`` lies inside the representable range.
    """

    def __init__(self, grid: _Grid, rows: int):
        self.grid, self.rows = grid, rows
        grad = ops.Custom(self._grad, out_shape=lambda x, low, high, dout: (x, low, high),
                          out_dtype=lambda x, low, high, dout: (x, low, high), func_type="pyfunc")

        def observed_bprop(x, out, dout):
            return (grad(x, out[1], out[2], dout[0])[0],)

        def given_bprop(x, low, high, out, dout):
            return grad(x, low, high, dout)

        self.observe_and_quantize = ops.Custom(
            self._observe_and_quantize, out_shape=lambda x: (x, [rows], [rows]),
            out_dtype=lambda x: (x, x, x), func_type="pyfunc", bprop=observed_bprop)
        self.quantize = ops.Custom(self._quantize, out_shape=lambda x, low, high: x,
                                   out_dtype=lambda x, low, high: x, func_type="pyfunc", bprop=given_bprop)

    def _observe_and_quantize(self, x: np.ndarray):
        rows = x.reshape(self.rows, -1)
        low = np.minimum(rows.min(axis=1), np.float32(0))
        high = np.maximum(rows.max(axis=1), np.float32(0))
        return self._quantize(x, low, high), low, high

    def _quantize(self, x: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        scale, lowest, highest = self.grid.bounds(low.reshape(-1, 1), high.reshape(-1, 1))
        clipped = np.minimum(np.maximum(x.reshape(self.rows, -1), lowest), highest)
        # The nudged minimum is a whole number of steps, so rounding x / scale lands on the same grid.
        quantized = np.round(clipped / scale) * scale
        return (clipped + (quantized - clipped)).reshape(x.shape)

    def _grad(self, x: np.ndarray, low: np.ndarray, high: np.ndarray, dout: np.ndarray):
        _, lowest, highest = self.grid.bounds(low.reshape(-1, 1), high.reshape(-1, 1))
        rows = x.reshape(self.rows, -1)
        inside = (rows >= lowest) & (rows <= highest)
        return (dout.reshape(self.rows, -1) * inside).reshape(x.shape), np.zeros_like(low), np.zeros_like(high)


class _MinMaxQuantizers:
    """Layer-policy mixin: SimQAT's policies, handing out :class:`MinMaxFakeQuantizer`."""

    def get_weight_quantizer(self, weight_name="", perchannel_args: PerChannelArgs = PerChannelArgs(), **kwargs):
        cfg = self._config
        channels = perchannel_args.num_channels if cfg.weight_per_channel else 0
        return MinMaxFakeQuantizer(get_quant_dtype_num_bits(cfg.weight_quant_dtype), cfg.weight_symmetric,
                                   cfg.weight_narrow_range, num_channels=channels)

    def _get_input_quantizer(self, input_index=-1, perchannel_args: PerChannelArgs = PerChannelArgs(), **kwargs):
        return self._activation_quantizer()

    def _get_output_quantizer(self, perchannel_args: PerChannelArgs = PerChannelArgs(), **kwargs):
        return self._activation_quantizer()

    def _activation_quantizer(self) -> MinMaxFakeQuantizer:
        cfg = self._config
        return MinMaxFakeQuantizer(get_quant_dtype_num_bits(cfg.act_quant_dtype), cfg.act_symmetric,
                                   cfg.act_narrow_range)


class MinMaxConvPolicy(_MinMaxQuantizers, ConvLayerPolicy):
    """SimQAT's Conv2d policy with CPU-runnable quantizers."""


class MinMaxConvBnPolicy(_MinMaxQuantizers, ConvBnLayerPolicy):
    """SimQAT's fused Conv2d+BN policy with CPU-runnable quantizers."""


class MinMaxDensePolicy(_MinMaxQuantizers, DenseLayerPolicy):
    """SimQAT's Dense policy with CPU-runnable quantizers."""


class MinMaxActPolicy(_MinMaxQuantizers, ActLayerPolicy):
    """SimQAT's activation policy with CPU-runnable quantizers."""


_MINMAX_POLICIES = {ConvLayerPolicy: MinMaxConvPolicy, ConvBnLayerPolicy: MinMaxConvBnPolicy,
                    DenseLayerPolicy: MinMaxDensePolicy, ActLayerPolicy: MinMaxActPolicy}


class MinMaxNetPolicy(SimulatedNetPolicy):
    """SimQAT's network policy (same layers, same fusion rules) with the CPU-runnable layer policies."""

    def build(self):
        if self._build:
            return
        super().build()
        for layer_type, policy in self._layer_policy_map.items():
            self._layer_policy_map[layer_type] = _MINMAX_POLICIES[type(policy)]([], [], self._config)


class MinMaxSimQAT(SimulatedQuantizationAwareTraining):
    """SimQAT whose fake quantizers run on CPU; ``apply``/``convert`` are Golden Stick's own.

    Plugged in the way Golden Stick's LSQ plugs its quantizers into SimQAT: ``_init_net_policy``.
    """

    def _init_net_policy(self, config):
        return MinMaxNetPolicy(config)


# ------------------------------------------------------------------ SCOP knockoff data

class KnockoffBatch(nn.Cell):
    """SCOP's knockoff step inside the training graph: append a shuffled copy of the batch (and
    its labels) so ``KfConv2d`` can mix real and knockoff features.

    Why: Golden Stick's ``KfCallback`` builds the copy in ``step_begin`` with ``ops.Randperm``,
    which has no CPU kernel ("Unsupported op [Randperm] on CPU"); the suite's trainer also has no
    per-batch data hook. The permutation here is the argsort of uniform noise, which every
    backend runs.
    """

    def __init__(self, net_with_loss: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net_with_loss = net_with_loss
        self.uniform = ops.UniformReal()

    def construct(self, images, labels):
        order = ops.sort(self.uniform((images.shape[0],)))[1]
        return self.net_with_loss(ops.concat((images, images[order])), ops.concat((labels, labels[order])))


# ------------------------------------------------------------------ UniPruner

MASKED_PREFIX = "masked_"


def unmask_parameter_names(net: nn.Cell) -> nn.Cell:
    """Undo UniPruner's renaming of the weights it wraps (``conv1.weight`` -> ``masked_conv1.weight``).

    Why: ``UniPruner.apply`` compiles the network for its graph analysis (phase ``export.mindir``)
    and only then renames the weights. MindSpore reuses that compiled graph when the same cell is
    exported with the same input shape, so Golden Stick's own export after the last epoch
    (``UniPrunerCallback``) refuses the network: "There's a mindspore.Parameter that wasn't
    created in nn.Cell ... The parameter name is: conv1.weight". With the names restored, graph and
    parameters agree again, and checkpoints and MINDIRs carry the model's own names.
    """
    for param in net.get_parameters():
        if param.name.startswith(MASKED_PREFIX):
            param.name = param.name[len(MASKED_PREFIX):]
    return net


def refresh_pruned(net: nn.Cell) -> nn.Cell:
    """Give a network whose parameters Golden Stick's ``prune_net`` reshaped in place fresh
    parameter objects and no compiled graphs, so MindSpore sees the new shapes.

    Why: ``prune_net`` shrinks weights with ``Parameter.assign_value``. MindSpore 2.7 keys a cell's
    compiled graphs by the cell and its input shapes only, so evaluating or exporting the pruned
    network would reuse graphs compiled for the unpruned shapes; and PyNative remembers the shape
    of a parameter it has already run (``set_data`` does not reset it): the FLOP count of the
    pruned network failed with "For 'Conv2D', 'w_shape[0]' must be equal to 'out_channel', but
    got 'w_shape[0]': 16, 'out_channel': 8".
    """
    for _, cell in net.cells_and_names():
        for name, param in list(cell.parameters_and_names(expand=False)):
            cell.insert_param_to_cell(name, Parameter(Tensor(param.asnumpy()), name=param.name,
                                                      requires_grad=param.requires_grad))
    net.compile_cache.clear()
    return net


# ------------------------------------------------------------------ SLB weight quantizer

class CompactSlbQuantizer(SlbFakeQuantizerPerLayer):
    """Golden Stick's SLB weight quantizer with its arithmetic in two numpy kernels, so a step holds
    about three copies of a layer's level distributions instead of about twenty.

    Why: SLB keeps every convolution weight as logits over its 2^bits levels (a 5-D parameter,
    16x the weight for 4 bits), and ``SlbFakeQuantizerPerLayer.construct`` (``softmax(x * T) *
    w_list``, summed over the levels) leaves MindSpore's CPU graph a full-size buffer per
    operation and per gradient, kept until the step ends: SLB on the width-32 ResNet-18 peaked at
    4.7 GB against 0.7 GB for the float run, and the full-width recipe at 19.5 GB. The forward
    kernel returns the 4-D weight; the backward recomputes the softmax in place
    (``dL/dx = T * p * (w_list - w) * dL/dw``). Semantics are Golden Stick's: softmax of the
    scaled logits while training until the temperature schedule ends, the most likely level after
    that and in eval mode (no gradient through that argmax). ``cls_name`` stays Golden Stick's, so
    its ``TemperatureScheduler`` still finds and drives the quantizer.
    """

    def __init__(self, like: SlbFakeQuantizerPerLayer):
        super().__init__(like.num_bits)
        self.w_list, self.temperature = like.w_list, like.temperature
        self.flag_temperature_end_changing = like.flag_temperature_end_changing
        levels = np.asarray(like.w_list_init, np.float32)
        weight = _SlbKernels(levels)
        grad = ops.Custom(weight.grad, out_shape=lambda x, t, end, dout: (x, t, end),
                          out_dtype=lambda x, t, end, dout: (x, t, end), func_type="pyfunc")

        def bprop(x, temperature, end, out, dout):
            return grad(x, temperature, end, dout)

        self._weight = ops.Custom(weight.forward, out_shape=lambda x, t, end: x[:-1],
                                  out_dtype=lambda x, t, end: x, func_type="pyfunc", bprop=bprop)

    @property
    def cls_name(self) -> str:
        return SlbFakeQuantizerPerLayer.__name__

    def construct(self, x):
        end = self.flag_temperature_end_changing if self.training else self.true_tensor
        return self._weight(x, self.temperature, end)


class _SlbKernels:
    """SLB's weight = expected level under softmax(logits * T) (or the most likely level once
    ``end`` is set), and its gradient, in numpy over the last (levels) axis."""

    def __init__(self, levels: np.ndarray):
        self.levels = levels

    def forward(self, logits: np.ndarray, temperature: np.ndarray, end: np.ndarray) -> np.ndarray:
        if end:
            return self.levels[logits.argmax(axis=-1)]
        return self._softmax(logits, temperature) @ self.levels

    def grad(self, logits: np.ndarray, temperature: np.ndarray, end: np.ndarray, dout: np.ndarray):
        zeros = (np.zeros_like(temperature), np.zeros_like(end))
        if end:
            return (np.zeros_like(logits), *zeros)
        probs = self._softmax(logits, temperature)
        weight = probs @ self.levels
        centred = np.subtract(self.levels, weight[..., None], dtype=np.float32)
        probs *= centred
        del centred
        probs *= (dout * temperature)[..., None]
        return (probs, *zeros)

    @staticmethod
    def _softmax(logits: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        scaled = logits * temperature
        scaled -= scaled.max(axis=-1, keepdims=True)
        np.exp(scaled, out=scaled)
        scaled /= scaled.sum(axis=-1, keepdims=True)
        return scaled


def compact_slb_quantizers(net: nn.Cell) -> nn.Cell:
    """Swap every SLB weight quantizer in ``net`` (after ``SlbQuantAwareTraining.apply``) for a
    :class:`CompactSlbQuantizer` sharing its parameters."""
    for _, cell in net.cells_and_names():
        if isinstance(cell, Conv2dSlbQuant) and not isinstance(cell.weight_quantizer(), CompactSlbQuantizer):
            cell._weight_quantizer = CompactSlbQuantizer(cell.weight_quantizer())
    return net
