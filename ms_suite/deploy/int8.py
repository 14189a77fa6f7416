"""INT8 ONNX models for CPU deployment.

* :func:`qat_to_qdq`: the float ONNX export of a SimQAT-trained network, BatchNorm folded and
  kernel taps that only meet padding cropped, with QuantizeLinear/DequantizeLinear pairs where
  ONNX Runtime turns them into INT8 ops, using the ranges SimQAT's quantizers learned: weights per
  output channel, symmetric, stored as INT8 initializers (the fake quantizer's symmetric
  ``[-h, h]`` over 255 steps with zero point 128 is INT8 with zero point 0); activations per
  tensor, asymmetric, UINT8.
* :func:`ptq_static`: ONNX Runtime's static post-training quantization of the float model,
  calibrated on training batches (the baseline QAT is compared with).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ms_suite.deploy.onnx_graph import Graph, Range, calibrate, crop_padding_taps, fold_batchnorm, weight_range
from ms_suite.deploy.verify import Parity, Tolerance
from ms_suite.errors import UserError

INT8_NAME = "compressed_int8.onnx"
INT8_NOISE_FACTOR = 1.5  # the INT8 file vs the fake-quant network, in units of what quantization changes
INT8_MIN_MAX_REL = 0.2  # the smallest max_rel tolerance, whatever the measured change
INT8_MIN_AGREEMENT = 95.0  # percent of predicted classes that agree, at least (near-tied logits can flip)
CALIBRATION_BATCHES = 8  # training batches for the ranges SimQAT did not learn (and the PTQ baseline)
QDQ_OPSET = 13  # per-channel DequantizeLinear (axis) needs opset 13; MindSpore writes 11


def int8_tolerance(quantization: Parity) -> Tolerance:
    """How far ``compressed_int8.onnx`` may be from the fake-quant network it comes from.

    The file quantizes at other points than the network (BatchNorm folded; calibrated ranges where
    SimQAT learned none; float logits where the network clips them at the last training batch's
    range, Golden Stick's SimQAT keeping no running range), so on a few samples the two differ by
    about as much as quantization changes the network at all. That change is measured on the
    verification samples, ``quantization``: the float network holding the fine-tuned weights
    against the fake-quant network. The file may differ by ``INT8_NOISE_FACTOR`` times its max_rel
    (at least ``INT8_MIN_MAX_REL``) and flip one prediction more than it (at least 5% may flip).
    A wrong scale or a range on the wrong tensor moves the outputs far beyond that."""
    one_sample = 100.0 / quantization.batch
    return Tolerance(max(INT8_MIN_MAX_REL, INT8_NOISE_FACTOR * quantization.max_rel),
                     min(INT8_MIN_AGREEMENT, quantization.top1_agreement - one_sample),
                     f"INT8 file vs the fake-quant network; quantization alone (float weights vs fake-quant) "
                     f"gives max_rel {quantization.max_rel:.3g} and {quantization.top1_agreement:.1f}% agreement "
                     f"on these {quantization.batch} samples")


def learned_range(quantizer) -> Range:
    """The range a Golden Stick-style fake quantizer learned (``mins``/``maxs``/``symmetric``/``num_bits``)."""
    if quantizer.num_bits() != 8:
        raise UserError(f"INT8 ONNX export needs 8-bit quantizers; this one has {quantizer.num_bits()} bits")
    return Range(np.asarray(quantizer.mins(), np.float32), np.asarray(quantizer.maxs(), np.float32),
                 quantizer.symmetric())


@dataclasses.dataclass
class QuantPoints:
    """What SimQAT quantized, by the float model's names: weight layers by weight initializer
    name (input, weight, output ranges); activations by cell name (input, output ranges)."""

    layers: Dict[str, Dict[str, Optional[Range]]]
    activations: Dict[str, Dict[str, Optional[Range]]]


def _ranges(cell) -> Dict[str, Optional[Range]]:
    found = {}
    for key, getter in (("input", "input_quantizer"), ("output", "output_quantizer"), ("weight", "weight_quantizer")):
        try:
            quantizer = getattr(cell, getter)()
        except AttributeError:  # ActQuant declares weight_quantizer() but has none
            quantizer = None
        found[key] = learned_range(quantizer) if quantizer is not None else None
    return found


def quant_points(net) -> QuantPoints:
    """The learned ranges of every quant cell of a SimQAT network."""
    from mindspore_gs.quantization.quant_cell import QuantCell

    layers, activations = {}, {}
    for name, cell in net.cells_and_names():
        if not isinstance(cell, QuantCell):
            continue
        weight = getattr(cell.handler(), "weight", None)
        if weight is not None:
            layers[weight.name] = _ranges(cell)
        else:
            activations[name] = _ranges(cell)
    return QuantPoints(layers, activations)


def _weight_layer(g: Graph, node) -> Optional[Tuple[str, str]]:
    """(block, layer) of a Conv from its weight name (``layer1.0.conv2.weight``: ``("layer1.0", "conv2")``;
    the stem's ``conv1.weight``: ``("", "conv1")``), or None."""
    if node is None or node.op_type != "Conv":
        return None
    path = node.input[1].rsplit(".", 1)[0]
    block, _, layer = path.rpartition(".")
    return block, layer


def _relu_cell_name(g: Graph, relu) -> Optional[str]:
    """The SimQAT activation cell of a ResNet ReLU: ``<block>.ReLU`` after the first convolution,
    ``<block>.ReLU_1`` after the residual Add (``mindspore.rewrite`` names a reused cell's calls
    so); ``ReLU`` in the stem."""
    producer = g.source(relu.input[0])
    if producer is not None and producer.op_type == "Add":
        blocks = [_weight_layer(g, g.source(name)) for name in producer.input]
        return next((f"{found[0]}.ReLU_1" for found in blocks if found and found[1] == "conv2" and found[0]), None)
    found = _weight_layer(g, producer)
    if found is None or found[1] != "conv1":
        return None
    return f"{found[0]}.ReLU" if found[0] else "ReLU"


def qat_to_qdq(model, points: QuantPoints, batches: Sequence[Dict[str, np.ndarray]]):
    """SimQAT's INT8 model from the float ONNX ``model`` of its fine-tuned weights (edited in place).

    Kernel taps that only ever meet zero padding are cropped (ONNX Runtime's INT8 convolution
    multiplies them in full) and BatchNorm is folded into the convolutions; their
    weights take the learned per-channel ranges scaled by the fold (the same INT8 codes). Activations are quantized with the learned ranges at
    the network input, the classifier input and every ReLU output (a ReLU followed by a
    zero-point-0 Quantize is what ONNX Runtime fuses into the INT8 op before it). Tensors left
    without a range (residual-branch outputs, which SimQAT quantized before BatchNorm; the
    downsample convolutions, which it left float) get min/max ranges over ``batches``. Biases
    become INT32 and the logits stay float. ONNX Runtime then runs every convolution, residual
    Add and the classifier as an INT8 op."""
    model.opset_import[0].version = max(model.opset_import[0].version, QDQ_OPSET)
    g = Graph(model)
    crop_padding_taps(g)
    factors = fold_batchnorm(g)
    _quantize_activations(g, points)
    _quantize_learned_layers(g, points, factors)
    _quantize_remaining_weights(g)
    _quantize_calibrated(g, batches)
    _quantize_biases(g)
    g.finish()
    return model


def _quantize_activations(g: Graph, points: QuantPoints) -> None:
    for node in [n for n in g.nodes if n.op_type == "Relu"]:
        name = _relu_cell_name(g, node)
        if name not in points.activations:
            raise UserError(f"cannot match ONNX node {node.name} to a SimQAT activation cell (looked for {name!r}); "
                            "INT8 ONNX from SimQAT supports the zoo's ResNets")
        if points.activations[name]["output"] is not None:
            g.quantize_output(node, points.activations[name]["output"])


def _quantize_learned_layers(g: Graph, points: QuantPoints, factors: Dict[str, np.ndarray]) -> None:
    """Inputs, weights and (where no BatchNorm was folded in after the quantizer) outputs of the
    layers SimQAT quantized."""
    for node in [n for n in g.nodes if n.op_type in ("Conv", "Gemm") and n.input[1] in points.layers]:
        ranges, weight = points.layers[node.input[1]], node.input[1]
        if ranges["input"] is not None and not g.dequantized(node.input[0]):
            g.quantize_input(node, 0, ranges["input"])
        if ranges["weight"] is not None:
            g.quantize_weight(weight, ranges["weight"].scaled(factors[weight]) if weight in factors
                              else ranges["weight"])
        if ranges["output"] is not None and weight not in factors and not g.is_output(node.output[0]):
            g.quantize_output(node, ranges["output"])


def _quantize_remaining_weights(g: Graph) -> None:
    """Weights SimQAT left float (Golden Stick skips the residual downsample convolutions)."""
    for node in [n for n in g.nodes if n.op_type in ("Conv", "Gemm") and n.input[1] in g.initializers]:
        g.quantize_weight(node.input[1], weight_range(g.array(node.input[1])))


def _quantize_calibrated(g: Graph, batches: Sequence[Dict[str, np.ndarray]]) -> None:
    """Q/DQ with calibrated ranges on layer outputs nothing quantizes (the logits excepted) and on
    layer inputs still float, so no float op is left between INT8 ops."""
    layers = [n for n in g.nodes if n.op_type in ("Conv", "Gemm", "Add")]
    outputs = [n for n in layers if not g.quantized_after(n.output[0]) and not g.is_output(n.output[0])]
    calibrated = {n.output[0] for n in outputs}
    inputs = [(n, i) for n in layers for i, name in enumerate(n.input)
              if name not in g.initializers and name not in calibrated and not g.dequantized(name)]
    ranges = calibrate(g, sorted(calibrated | {n.input[i] for n, i in inputs}), batches)
    for node in outputs:
        g.quantize_output(node, ranges[node.output[0]])
    for node, index in inputs:
        g.quantize_input(node, index, ranges[node.input[index]])


def _quantize_biases(g: Graph) -> None:
    for node in [n for n in g.nodes if n.op_type in ("Conv", "Gemm") and len(n.input) > 2]:
        if g.dequantized(node.input[0]) and node.input[2] in g.initializers:
            g.quantize_bias(node, g.array(f"{node.input[1]}_scale"))


class _Batches:
    """ONNX Runtime's CalibrationDataReader over (input name -> array) batches."""

    def __init__(self, batches: Iterable[Dict[str, np.ndarray]]):
        self.batches = iter(batches)

    def get_next(self):
        return next(self.batches, None)


def ptq_static(float_path: str, output: str, batches: Sequence[Dict[str, np.ndarray]]) -> str:
    """ONNX Runtime static INT8 quantization (QDQ; weights per channel INT8, activations UINT8,
    min/max calibration on ``batches``) of the float file at ``float_path``."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = output + ".pre.onnx"
    try:  # per-channel QDQ needs opset 13; MindSpore writes 11
        onnx.save(version_converter.convert_version(onnx.load(float_path), QDQ_OPSET), prepared)
        quant_pre_process(prepared, prepared)
        quantize_static(prepared, output, _Batches(batches), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    finally:
        if os.path.exists(prepared):
            os.remove(prepared)
    os.chmod(output, 0o644)
    return output
