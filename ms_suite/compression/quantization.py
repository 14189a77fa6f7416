"""Quantization-aware training through Golden Stick: SimQAT (INT8) and SLB (1/2/4-bit weights)."""
from __future__ import annotations

import os
from typing import Dict, List, Tuple

import mindspore as ms
from mindspore import nn
from mindspore.common.dtype import QuantDtype
from mindspore.train import Model
from mindspore_gs.quantization import SimulatedQuantizationAwareTraining, SlbQuantAwareTraining
from mindspore_gs.quantization.quant_cell import QuantCell
from mindspore_gs.quantization.slb.slb_quant import Conv2dSlbQuant

from ms_suite.compression.base import Algorithm, GoldenStickCallbacks, TrainContext, register
from ms_suite.compression.compat import MinMaxSimQAT, compact_slb_quantizers, rewrite_workspace
from ms_suite.data import build_dataset
from ms_suite.compression.report import FLOAT_BITS
from ms_suite.deploy import export_model, signature, train_batches, verify_file
from ms_suite.deploy.int8 import CALIBRATION_BATCHES, INT8_NAME, int8_tolerance, qat_to_qdq, quant_points
from ms_suite.deploy.verify import network_output, parity
from ms_suite.errors import UserError
from ms_suite.engine.callbacks import RunContext
from ms_suite.models.flops import FLOP_COUNTERS, counter_for

ACTIVATION_BITS = 8  # both algorithms fake-quantize activations to INT8 (when they do)
QAT_ON_ASCEND = ("Golden Stick 1.3.0 supports its quantization-aware training on GPU only and marks it "
                 "unsupported on Ascend (the suite adds CPU)")


def _quant_cell_flops(cell: QuantCell, inputs: tuple, output) -> int:
    """A quant cell computes what its wrapped float cell computes (at lower precision)."""
    handler = cell.handler()
    counter = counter_for(handler)
    return counter(handler, inputs, output) if counter else 0


FLOP_COUNTERS[QuantCell] = _quant_cell_flops


class _QuantizationAwareTraining(Algorithm):
    """Shared by SimQAT and SLB: rewrite with Golden Stick's ``apply``, fine-tune, ``convert``."""

    def check(self, device: str) -> None:
        if device == "Ascend":
            raise UserError(f"compression.algorithm={self.name} cannot run on Ascend: {QAT_ON_ASCEND}; "
                            "set runtime.device=GPU or CPU")
        super().check(device)

    def golden_stick(self, device: str):
        """The configured Golden Stick algorithm object for ``device``."""
        raise NotImplementedError

    def callbacks(self, ctx: TrainContext) -> list:
        return []

    def train(self, ctx: TrainContext) -> nn.Cell:
        self.algo = self.golden_stick(ctx.device)

        def apply(net: nn.Cell) -> nn.Cell:
            with rewrite_workspace(net, ctx.output_dir):
                return self.adapt(self.algo.apply(net))

        return ctx.fit(model_hook=apply, callbacks=self.callbacks(ctx))

    def adapt(self, net: nn.Cell) -> nn.Cell:
        """The suite's changes to the network Golden Stick's ``apply`` returned (see compat.py)."""
        return net

    def convert(self, net: nn.Cell) -> nn.Cell:
        return self.algo.convert(net)

    def quantized_layers(self, net: nn.Cell) -> Dict[str, Tuple[int, int]]:
        """``{layer: (weight bits, activation bits)}`` for every weight layer wrapped in a quant cell."""
        found = {}
        for _, cell in net.cells_and_names():
            handler = cell.handler() if isinstance(cell, QuantCell) else None
            if isinstance(handler, (nn.Conv2d, nn.Dense)):
                quantized_act = cell.input_quantizer() is not None or cell.output_quantizer() is not None
                found[handler.weight.name.rsplit(".", 1)[0]] = (
                    self.weight_bits, ACTIVATION_BITS if quantized_act else FLOAT_BITS)
        return found

    def layers(self, before: nn.Cell, after: nn.Cell) -> List[Dict[str, object]]:
        quantized = self.quantized_layers(after)
        rows = []
        for name, cell in before.cells_and_names():
            if isinstance(cell, (nn.Conv2d, nn.Dense)):
                weight_bits, act_bits = quantized.get(name, (FLOAT_BITS, FLOAT_BITS))
                rows.append({"layer": name, "weights": int(cell.weight.size), "weight_bits": weight_bits,
                             "activation_bits": act_bits})
        return rows


@register
class SimQAT(_QuantizationAwareTraining):
    """INT8 simulated quantization (Golden Stick's SimQAT); on CPU with a standard-op fake quantizer."""

    name = "simqat"
    weight_bits = 8
    notes = ("metric 'after' is compressed_int8.onnx (BatchNorm folded, INT8 weights, Q/DQ with SimQAT's learned "
             "ranges, min/max-calibrated where it learned none, including the float downsample convolutions "
             "above) run by ONNX Runtime over the eval split; 'network_metrics' is the fake-quant network",
             "compressed.mindir stores float weights plus INT8 scales (FakeQuantParam, no CPU kernel) for "
             "MindSpore Lite / Ascend conversion; 'weights at bit-width' is its packed size")

    def golden_stick(self, device: str):
        s = self.settings
        config = {"per_channel": [False, s.per_channel], "symmetric": [False, s.symmetric],
                  "narrow_range": [False, s.narrow_range], "enable_fusion": False, "bn_fold": False}
        # GPU runs Golden Stick's own quantizers; CPU has no kernels for them (see compat.py).
        algo_cls = SimulatedQuantizationAwareTraining if device == "GPU" else MinMaxSimQAT
        return algo_cls(config)

    def deploy(self, ctx: TrainContext, net: nn.Cell, inputs, path: str, samples, source: dict):
        """``compressed_int8.onnx`` beside ``path`` (see :func:`write_int8_onnx`)."""
        plain, _ = ctx.task.build_model(self.cfg, ctx.data_info)
        batches = train_batches(self.cfg, self.cfg.model.num_classes or ctx.data_info.num_classes,
                                signature(ctx.task.name).inputs[0], CALIBRATION_BATCHES)
        return write_int8_onnx(net, plain, ctx.task.name, inputs, os.path.join(os.path.dirname(path), INT8_NAME),
                               batches, samples, source)


def write_int8_onnx(net: nn.Cell, plain: nn.Cell, task_name: str, inputs, path: str, batches, samples,
                    source: dict):
    """The INT8 ONNX file of the SimQAT network ``net`` at ``path``: ``plain`` (the recipe's float
    network) takes its fine-tuned weights and is exported; BatchNorm is folded and Q/DQ pairs go at
    SimQAT's quantization points with its learned ranges (calibrated on ``batches`` where SimQAT
    learned none). Verified on ``samples`` against ``net`` within what quantization itself changes
    (``plain`` against ``net``); raises UserError outside that."""
    import onnx

    missing, _ = ms.load_param_into_net(plain, {p.name: p for p in net.get_parameters()})
    if missing:
        raise UserError(f"SimQAT network lacks the float weights {missing[:3]}; cannot build the INT8 ONNX")
    float_path, axes = export_model(plain, inputs, path, "ONNX", signature(task_name))
    model = qat_to_qdq(onnx.load(float_path), quant_points(net), batches)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    quantization = parity(network_output(net, samples), network_output(plain, samples), len(samples[0]))
    return verify_file(net, task_name, path, "ONNX", samples, axes, source, tolerance=int8_tolerance(quantization))


_SLB_DTYPES = {1: QuantDtype.INT1, 2: QuantDtype.INT2, 4: QuantDtype.INT4}


def selected_weights(net: nn.Cell) -> Dict[str, ms.Parameter]:
    """The parameters of an SLB network by the float model's names, each quantized convolution's
    weight being the levels SLB selected (what the network computes in eval mode)."""
    params = {p.name: p for p in net.get_parameters()}
    for _, cell in net.cells_and_names():
        if isinstance(cell, Conv2dSlbQuant):
            quantizer, name = cell.weight_quantizer(), cell.handler().weight.name
            training = quantizer.training
            quantizer.set_train(False)
            params[name] = ms.Parameter(quantizer(cell.weight), name=name)
            quantizer.set_train(training)
    return params


@register
class SLB(_QuantizationAwareTraining):
    """Searching for Low-Bit weights (Golden Stick's SLB): 1, 2 or 4-bit convolution weights.

    SLB replaces every convolution weight by a learned distribution over the 2^bits levels, so
    convolutions restart from Golden Stick's initialisation; BatchNorm and the classifier keep
    the pretrained weights."""

    name = "slb"
    notes = ("metric 'after' is compressed.onnx run by ONNX Runtime over the eval split: the recipe's float network "
             "holding the weight levels SLB selected; 'network_metrics' is the SLB network in eval mode, evaluated "
             "before convert (the converted network's FakeQuantParam nodes have no CPU kernel)",
             "compressed.onnx stores the levels as float32 (ONNX Runtime has no sub-8-bit convolution), so it is the "
             "float model's size; the MINDIR also stores them as float; 'weights at bit-width' is the packed size")

    @property
    def weight_bits(self) -> int:
        return self.settings.weight_bits

    def deploy(self, ctx: TrainContext, net: nn.Cell, inputs, path: str, samples, source: dict):
        """``compressed.onnx``: the recipe's float network holding the weight levels SLB selected,
        verified against the SLB network at fp32 tolerance."""
        plain, _ = ctx.task.build_model(self.cfg, ctx.data_info)
        missing, _ = ms.load_param_into_net(plain, selected_weights(net))
        if missing:
            raise UserError(f"SLB network lacks the weights {missing[:3]}; cannot build its ONNX file")
        written, axes = export_model(plain, inputs, path, "ONNX", signature(ctx.task.name))
        return verify_file(net, ctx.task.name, written, "ONNX", samples, axes, source)

    def check(self, device: str) -> None:
        s = self.settings
        if s.enable_act_quant and device == "CPU":
            raise UserError("compression.slb.enable_act_quant=true needs GPU: SLB's activation quantizer uses "
                            "MinMaxUpdatePerLayer, which has no CPU kernel; set it to false on CPU")
        if s.t_end_time < s.t_start_time:
            raise UserError(f"compression.slb.t_end_time ({s.t_end_time}) must not be below "
                            f"compression.slb.t_start_time ({s.t_start_time})")
        super().check(device)

    def golden_stick(self, device: str):
        s = self.settings
        return SlbQuantAwareTraining({
            "quant_dtype": [QuantDtype.INT8, _SLB_DTYPES[s.weight_bits]], "enable_act_quant": s.enable_act_quant,
            "enable_bn_calibration": False, "epoch_size": self.cfg.train.epochs, "has_trained_epoch": 0,
            "t_start_val": s.t_start_val, "t_start_time": s.t_start_time, "t_end_time": s.t_end_time,
            "t_factor": s.t_factor})

    def adapt(self, net: nn.Cell) -> nn.Cell:
        return compact_slb_quantizers(net)

    def callbacks(self, ctx: TrainContext) -> list:
        """SLB's temperature schedule (Golden Stick's ``TemperatureScheduler``), driven per epoch."""
        def make(context: RunContext) -> list:
            dataset = build_dataset(self.cfg.data, "train", self.cfg.train.batch_size, seed=self.cfg.train.seed,
                                    num_classes=context.num_classes)
            return self.algo.callbacks(Model(context.net), dataset)

        return [GoldenStickCallbacks(make)]
