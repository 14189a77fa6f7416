"""INT8 ONNX models for CPU deployment.

* :func:`qat_to_qdq`: the float ONNX export of a SimQAT-trained network, with
  QuantizeLinear/DequantizeLinear pairs at every point SimQAT fake-quantized, using the ranges
  its quantizers learned: weights per output channel, symmetric, stored as INT8 initializers;
  activations per tensor, asymmetric, UINT8. Both grids are exactly the fake quantizer's: its
  symmetric range ``[-h, h]`` over 255 steps with zero point 128 is INT8 with zero point 0.
* :func:`ptq_static`: ONNX Runtime's static post-training quantization of the float model,
  calibrated on training batches (the baseline QAT is compared with).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ms_suite.errors import UserError

INT8_NAME = "compressed_int8.onnx"
INT8_MAX_REL = 0.2  # INT8 file vs the fake-quant network: a rounding tie resolved differently moves a few steps
INT8_MIN_AGREEMENT = 95.0  # percent of predicted classes that agree (near-tied logits of a weak model can flip)
QDQ_OPSET = 13  # per-channel DequantizeLinear (axis) needs opset 13; MindSpore writes 11


@dataclasses.dataclass
class Range:
    """A learned quantization range: per channel (axis 0) when ``low`` has several entries."""

    low: np.ndarray
    high: np.ndarray
    symmetric: bool
    num_bits: int = 8

    @classmethod
    def of(cls, quantizer) -> "Range":
        """From a Golden Stick-style fake quantizer (``mins``/``maxs``/``symmetric``/``num_bits``)."""
        if quantizer.num_bits() != 8:
            raise UserError(f"INT8 ONNX export needs 8-bit quantizers; this one has {quantizer.num_bits()} bits")
        return cls(np.asarray(quantizer.mins(), np.float32), np.asarray(quantizer.maxs(), np.float32),
                   quantizer.symmetric())

    def scale_zero_point(self):
        """(scale, zero point) on the fake quantizer's grid: INT8 zp 0 (symmetric) or UINT8."""
        low, high = np.minimum(self.low, 0.0), np.maximum(self.high, 0.0)
        if self.symmetric:
            high = np.maximum(-low, high)
            scale = np.maximum(2.0 * high / 255.0, 1e-12).astype(np.float32)
            return scale, np.zeros(scale.shape, np.int8)
        scale = np.maximum((high - low) / 255.0, 1e-12).astype(np.float32)
        zero_point = np.clip(np.round(-low / scale), 0, 255).astype(np.uint8)
        return scale, zero_point


@dataclasses.dataclass
class QuantPoints:
    """What SimQAT quantized, by the float model's names: weight layers by weight initializer
    name (input, weight, output ranges); activations by ONNX node output to quantize."""

    layers: Dict[str, Dict[str, Optional[Range]]]
    activations: Dict[str, Dict[str, Optional[Range]]]


def _ranges(cell) -> Dict[str, Optional[Range]]:
    found = {}
    for key, getter in (("input", "input_quantizer"), ("output", "output_quantizer"), ("weight", "weight_quantizer")):
        try:
            quantizer = getattr(cell, getter)()
        except AttributeError:  # ActQuant declares weight_quantizer() but has none
            quantizer = None
        found[key] = Range.of(quantizer) if quantizer is not None else None
    return found


def quant_points(net) -> QuantPoints:
    """The learned ranges of every quant cell of a SimQAT network."""
    from mindspore_gs.quantization.quant_cell import QuantCell

    layers, activations = {}, {}
    for name, cell in net.cells_and_names():
        if not isinstance(cell, QuantCell):
            continue
        handler = cell.handler()
        weight = getattr(handler, "weight", None)
        if weight is not None:
            layers[weight.name] = _ranges(cell)
        else:
            activations[name] = _ranges(cell)
    return QuantPoints(layers, activations)


class _Graph:
    """An ONNX graph's nodes with their producers and consumers, while Q/DQ nodes are inserted."""

    def __init__(self, model):
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.count = 0

    def param_of(self, node, suffix: str) -> Optional[str]:
        return next((name for name in node.input if name in self.initializers and name.endswith(suffix)), None)

    def add(self, node) -> None:
        self.nodes.append(node)
        self.producer.update({out: node for out in node.output})

    def qdq(self, tensor: str, rng: Range, output: Optional[str] = None) -> str:
        """Q/DQ of ``tensor`` (per tensor); returns the dequantized tensor (``output`` if given)."""
        from onnx import helper, numpy_helper

        scale, zero_point = rng.scale_zero_point()
        self.count += 1
        stem = f"qdq{self.count}"
        output = output or f"{stem}_dq"
        self.graph.initializer.extend([numpy_helper.from_array(scale.reshape(()), f"{stem}_scale"),
                                       numpy_helper.from_array(zero_point.reshape(()), f"{stem}_zp")])
        self.add(helper.make_node("QuantizeLinear", [tensor, f"{stem}_scale", f"{stem}_zp"], [f"{stem}_q"],
                                  name=f"{stem}_Q"))
        self.add(helper.make_node("DequantizeLinear", [f"{stem}_q", f"{stem}_scale", f"{stem}_zp"], [output],
                                  name=f"{stem}_DQ"))
        return output

    def quantize_weight(self, name: str, rng: Range) -> None:
        """Store weight ``name`` as INT8 (per output channel) behind a DequantizeLinear named ``name``."""
        from onnx import helper, numpy_helper

        weight = numpy_helper.to_array(self.initializers[name])
        scale, zero_point = rng.scale_zero_point()
        shape = (-1,) + (1,) * (weight.ndim - 1)
        quantized = np.clip(np.round(weight / scale.reshape(shape)), -128, 127).astype(np.int8)
        self.initializers[name].CopyFrom(numpy_helper.from_array(quantized, f"{name}_int8"))
        self.graph.initializer.extend([numpy_helper.from_array(scale, f"{name}_scale"),
                                       numpy_helper.from_array(zero_point, f"{name}_zp")])
        self.add(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zp"], [name],
                                  axis=0, name=f"{name}_DQ"))

    def quantize_input(self, node, index: int, rng: Range) -> None:
        node.input[index] = self.qdq(node.input[index], rng)

    def quantize_output(self, node, rng: Range) -> None:
        """Q/DQ on ``node``'s output: its consumers (or the graph output of that name) read the DQ."""
        tensor = node.output[0]
        if any(value.name == tensor for value in self.graph.output):
            node.output[0] = f"{tensor}_float"
            self.producer[node.output[0]] = node
            self.qdq(node.output[0], rng, output=tensor)
            return
        consumers = [n for n in self.nodes if tensor in n.input]
        dequantized = self.qdq(tensor, rng)
        for consumer in consumers:
            consumer.input[:] = [dequantized if name == tensor else name for name in consumer.input]

    def finish(self) -> None:
        """Write the nodes back in topological order."""
        ready = {value.name for value in self.graph.input} | {t.name for t in self.graph.initializer} | {""}
        pending, ordered = list(self.nodes), []
        while pending:
            runnable = [n for n in pending if all(name in ready for name in n.input)]
            if not runnable:
                raise UserError(f"INT8 graph has a cycle or a missing input at {pending[0].name}")
            for node in runnable:
                ordered.append(node)
                ready.update(node.output)
            pending = [n for n in pending if n not in runnable]
        del self.graph.node[:]
        self.graph.node.extend(ordered)


def _source(g: _Graph, tensor: str):
    """The node computing ``tensor``, looking through inserted Quantize/DequantizeLinear pairs."""
    node = g.producer.get(tensor)
    while node is not None and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        node = g.producer.get(node.input[0])
    return node


def _block_of(g: _Graph, node, layer: str) -> Optional[str]:
    """The residual block whose BatchNorm ``layer`` (``bn1``, ``bn2``) computed ``node``'s output
    ("" for the stem), from the parameter names; None when ``node`` is no such layer."""
    if node is None or node.op_type != "BatchNormalization":
        return None
    suffix = ".gamma"
    name = g.param_of(node, suffix) or ""
    path = name[: -len(suffix)]
    if path.rsplit(".", 1)[-1] != layer:
        return None
    return path.rsplit(".", 1)[0] if "." in path else ""


def _relu_cell_name(g: _Graph, relu) -> Optional[str]:
    """The SimQAT activation cell of a ResNet ReLU: ``<block>.ReLU`` after the first BatchNorm,
    ``<block>.ReLU_1`` after the residual Add
    (``mindspore.rewrite`` names a reused cell's calls so); ``ReLU`` in the stem."""
    producer = _source(g, relu.input[0])
    if producer is not None and producer.op_type == "Add":
        for name in producer.input:
            block = _block_of(g, _source(g, name), "bn2")
            if block:
                return f"{block}.ReLU_1"
        return None
    block = _block_of(g, producer, "bn1")
    if block is None:
        return None
    return f"{block}.ReLU" if block else "ReLU"


def qat_to_qdq(model, points: QuantPoints):
    """Insert SimQAT's quantization points into a float ONNX ``model`` (in place); returns it.

    BatchNorm stays a float op between the convolution's output quantizer and the ReLU's input
    quantizer, as SimQAT trained it (``bn_fold: false``)."""
    g = _Graph(model)
    for node in [n for n in g.nodes if n.op_type in ("Conv", "Gemm")]:
        ranges = points.layers.get(node.input[1])
        if ranges is not None:
            _quantize_node(g, node, ranges)
    for node in [n for n in g.nodes if n.op_type == "Relu"]:
        name = _relu_cell_name(g, node)
        if name not in points.activations:
            raise UserError(f"cannot match ONNX node {node.name} to a SimQAT activation cell (looked for {name!r}); "
                            "INT8 ONNX from SimQAT supports the zoo's ResNets")
        _quantize_node(g, node, points.activations[name])
    g.finish()
    model.opset_import[0].version = max(model.opset_import[0].version, QDQ_OPSET)
    return model


def _quantize_node(g: _Graph, node, ranges: Dict[str, Optional[Range]]) -> None:
    if ranges["input"] is not None:
        g.quantize_input(node, 0, ranges["input"])
    if ranges["weight"] is not None:
        g.quantize_weight(node.input[1], ranges["weight"])
    if ranges["output"] is not None:
        g.quantize_output(node, ranges["output"])


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
