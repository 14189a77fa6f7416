"""Editing an ONNX graph for INT8 deployment: crop kernel taps that only meet padding, fold
BatchNorm into convolutions, insert QuantizeLinear/DequantizeLinear, and calibrate activation
ranges by running the graph."""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ms_suite.errors import UserError

QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclasses.dataclass
class Range:
    """A quantization range: per channel (axis 0) when ``low`` has several entries."""

    low: np.ndarray
    high: np.ndarray
    symmetric: bool

    def scale_zero_point(self) -> Tuple[np.ndarray, np.ndarray]:
        """(scale, zero point) on a fake quantizer's grid: symmetric ``[-h, h]`` over 255 steps is
        INT8 with zero point 0; asymmetric is UINT8 with a nudged zero point."""
        low, high = np.minimum(self.low, 0.0), np.maximum(self.high, 0.0)
        if self.symmetric:
            high = np.maximum(-low, high)
            scale = np.maximum(2.0 * high / 255.0, 1e-12).astype(np.float32)
            return scale, np.zeros(scale.shape, np.int8)
        scale = np.maximum((high - low) / 255.0, 1e-12).astype(np.float32)
        zero_point = np.clip(np.round(-low / scale), 0, 255).astype(np.uint8)
        return scale, zero_point

    def scaled(self, factor: np.ndarray) -> "Range":
        """The range of ``factor * x`` per channel (a symmetric range stays symmetric)."""
        magnitude = np.abs(factor).astype(np.float32)
        return Range(self.low * magnitude, self.high * magnitude, self.symmetric)


def weight_range(weight: np.ndarray) -> Range:
    """Per output channel, symmetric: the weight's own largest magnitude (a min/max quantizer's range)."""
    high = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1).astype(np.float32)
    return Range(-high, high, True)


class Graph:
    """An ONNX model's nodes with their producers, while layers are folded and Q/DQ nodes inserted."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.nodes = list(self.graph.node)
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.count = 0

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.initializers[name])

    def set_array(self, name: str, value: np.ndarray, stored_as: Optional[str] = None) -> None:
        """Store ``value`` as initializer ``stored_as`` (default ``name``), replacing ``name``'s, or add it."""
        from onnx import numpy_helper

        tensor = numpy_helper.from_array(value, stored_as or name)
        if name in self.initializers:
            stored = self.initializers.pop(name)
            stored.CopyFrom(tensor)
        else:
            self.graph.initializer.append(tensor)
            stored = self.graph.initializer[-1]
        self.initializers[stored.name] = stored

    def add(self, node) -> None:
        self.nodes.append(node)
        self.producer.update({out: node for out in node.output})

    def remove(self, node) -> None:
        self.nodes.remove(node)

    def consumers(self, tensor: str) -> list:
        return [n for n in self.nodes if tensor in n.input]

    def is_output(self, tensor: str) -> bool:
        return any(value.name == tensor for value in self.graph.output)

    def source(self, tensor: str):
        """The node computing ``tensor``, looking through Quantize/DequantizeLinear pairs."""
        node = self.producer.get(tensor)
        while node is not None and node.op_type in QUANT_OPS:
            node = self.producer.get(node.input[0])
        return node

    def dequantized(self, tensor: str) -> bool:
        node = self.producer.get(tensor)
        return node is not None and node.op_type == "DequantizeLinear"

    def quantized_after(self, tensor: str) -> bool:
        """Whether ``tensor`` is quantized by every consumer, directly or after a Relu."""
        consumers = self.consumers(tensor)
        return bool(consumers) and all(
            n.op_type == "QuantizeLinear" or (n.op_type == "Relu" and self.quantized_after(n.output[0]))
            for n in consumers)

    def qdq(self, tensor: str, rng: Range, output: Optional[str] = None) -> str:
        """Per-tensor Q/DQ of ``tensor``; returns the dequantized tensor (``output`` if given)."""
        from onnx import helper

        scale, zero_point = rng.scale_zero_point()
        self.count += 1
        stem = f"qdq{self.count}"
        output = output or f"{stem}_dq"
        self.set_array(f"{stem}_scale", scale.reshape(()))
        self.set_array(f"{stem}_zp", zero_point.reshape(()))
        self.add(helper.make_node("QuantizeLinear", [tensor, f"{stem}_scale", f"{stem}_zp"], [f"{stem}_q"],
                                  name=f"{stem}_Q"))
        self.add(helper.make_node("DequantizeLinear", [f"{stem}_q", f"{stem}_scale", f"{stem}_zp"], [output],
                                  name=f"{stem}_DQ"))
        return output

    def quantize_input(self, node, index: int, rng: Range) -> None:
        node.input[index] = self.qdq(node.input[index], rng)

    def quantize_output(self, node, rng: Range) -> None:
        """Q/DQ on ``node``'s output: its consumers (or the graph output of that name) read the DQ."""
        tensor = node.output[0]
        if self.is_output(tensor):
            node.output[0] = f"{tensor}_float"
            self.producer[node.output[0]] = node
            self.qdq(node.output[0], rng, output=tensor)
            return
        consumers = self.consumers(tensor)
        dequantized = self.qdq(tensor, rng)
        for consumer in consumers:
            consumer.input[:] = [dequantized if name == tensor else name for name in consumer.input]

    def quantize_weight(self, name: str, rng: Range) -> np.ndarray:
        """Store weight ``name`` as INT8 (per output channel) behind a DequantizeLinear named ``name``;
        returns the per-channel scale."""
        from onnx import helper

        weight = self.array(name)
        scale, zero_point = rng.scale_zero_point()
        shape = (-1,) + (1,) * (weight.ndim - 1)
        self.set_array(name, np.clip(np.round(weight / scale.reshape(shape)), -128, 127).astype(np.int8),
                       f"{name}_int8")
        self.set_array(f"{name}_scale", scale)
        self.set_array(f"{name}_zp", zero_point)
        self.add(helper.make_node("DequantizeLinear", [f"{name}_int8", f"{name}_scale", f"{name}_zp"], [name],
                                  axis=0, name=f"{name}_DQ"))
        return scale

    def quantize_bias(self, node, weight_scale: np.ndarray) -> None:
        """Bias of a layer with dequantized input and weight as INT32 at scale input x weight scale,
        the form ONNX Runtime's QLinearConv / QGemm take it in."""
        from onnx import helper

        name, input_scale = node.input[2], self.array(self.producer[node.input[0]].input[1])
        scale = (input_scale * weight_scale).astype(np.float32)
        self.set_array(name, np.round(self.array(name) / scale).astype(np.int32), f"{name}_int32")
        self.set_array(f"{name}_scale", scale)
        self.set_array(f"{name}_zp", np.zeros(scale.shape, np.int32))
        self.add(helper.make_node("DequantizeLinear", [f"{name}_int32", f"{name}_scale", f"{name}_zp"], [name],
                                  axis=0, name=f"{name}_DQ"))

    def finish(self) -> None:
        """Write the nodes back in topological order."""
        ready = {value.name for value in self.graph.input} | set(self.initializers) | {""}
        pending, ordered = list(self.nodes), []
        while pending:
            runnable = [n for n in pending if all(name in ready for name in n.input)]
            if not runnable:
                raise UserError(f"INT8 graph has a cycle or a missing input at {pending[0].name}")
            ordered.extend(runnable)
            ready.update(out for node in runnable for out in node.output)
            pending = [n for n in pending if n not in runnable]
        del self.graph.node[:]
        self.graph.node.extend(ordered)
        used = {name for node in ordered for name in node.input}
        kept = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(kept)
        self.initializers = {t.name: t for t in self.graph.initializer}


def fold_batchnorm(g: Graph) -> Dict[str, np.ndarray]:
    """Fold every BatchNormalization that follows a Conv into the Conv's weight and bias
    (``w * s``, ``(b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``, per output
    channel); returns ``{weight name: s}``."""
    factors = {}
    for bn in [n for n in g.nodes if n.op_type == "BatchNormalization"]:
        conv = g.producer.get(bn.input[0])
        if conv is None or conv.op_type != "Conv" or len(g.consumers(conv.output[0])) != 1:
            continue
        factors[conv.input[1]] = _fold(g, conv, bn)
    return factors


def _fold(g: Graph, conv, bn) -> np.ndarray:
    gamma, beta, mean, var = (g.array(name) for name in bn.input[1:5])
    epsilon = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    factor = (gamma / np.sqrt(var + epsilon)).astype(np.float32)
    weight = g.array(conv.input[1])
    bias = g.array(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else np.zeros_like(mean)
    g.set_array(conv.input[1], (weight * factor.reshape(-1, 1, 1, 1)).astype(np.float32))
    bias_name = conv.input[1].rsplit(".", 1)[0] + ".bias_folded"
    g.set_array(bias_name, ((bias - mean) * factor + beta).astype(np.float32))
    conv.input[:] = [conv.input[0], conv.input[1], bias_name]
    conv.output[0] = bn.output[0]
    g.producer[conv.output[0]] = conv
    g.remove(bn)
    return factor


def crop_padding_taps(g: Graph) -> Dict[str, Tuple[slice, slice]]:
    """Crop every convolution's kernel to the taps that meet real input at some output position
    (a 3x3 kernel over a 1x1 input, padding 1: the centre tap), with padding adjusted so the output
    is unchanged. Exact: the dropped taps only ever multiply zero padding. Returns ``{weight name:
    (rows, columns) kept}`` for the cropped ones."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(g.model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.input]}
    cropped = {}
    for conv in [n for n in g.nodes if n.op_type == "Conv" and n.input[1] in g.initializers]:
        spatial = shapes.get(conv.input[0], [])[2:]
        attrs = {a.name: list(onnx.helper.get_attribute_value(a)) for a in conv.attribute if a.type == a.INTS}
        if len(spatial) != 2 or not all(spatial) or any(d != 1 for d in attrs.get("dilations", [1, 1])):
            continue
        axes = [_used_taps(size, kernel, stride, begin, end) for size, kernel, stride, begin, end in
                zip(spatial, attrs["kernel_shape"], attrs.get("strides", [1, 1]), attrs["pads"][:2], attrs["pads"][2:])]
        if any(axis is None for axis in axes) or all(axis[0] == slice(0, k) for axis, k in
                                                      zip(axes, attrs["kernel_shape"])):
            continue
        _set_kernel(g, conv, [axis[0] for axis in axes], [axis[1] for axis in axes], [axis[2] for axis in axes])
        cropped[conv.input[1]] = tuple(axis[0] for axis in axes)
    return cropped


def _used_taps(size: int, kernel: int, stride: int, begin: int, end: int) -> Optional[Tuple[slice, int, int]]:
    """(taps kept, new padding before, after) along one axis, or None when the axis cannot be cropped
    without changing the output size."""
    outputs = (size + begin + end - kernel) // stride + 1
    used = [j for j in range(kernel) if any(0 <= o * stride - begin + j < size for o in range(outputs))]
    if not used:
        return None
    first, last = used[0], used[-1]
    new_begin = begin - first
    new_end = max(0, (outputs - 1) * stride - new_begin + (last - first + 1) - size)
    if (size + new_begin + new_end - (last - first + 1)) // stride + 1 != outputs:
        return None
    return slice(first, last + 1), new_begin, new_end


def _set_kernel(g: Graph, conv, taps: Sequence[slice], begins: Sequence[int], ends: Sequence[int]) -> None:
    from onnx import helper

    weight = g.array(conv.input[1])[:, :, taps[0], taps[1]]
    g.set_array(conv.input[1], np.ascontiguousarray(weight))
    kept = [a for a in conv.attribute if a.name not in ("kernel_shape", "pads")]
    del conv.attribute[:]
    conv.attribute.extend([*kept, helper.make_attribute("kernel_shape", list(weight.shape[2:])),
                           helper.make_attribute("pads", [*begins, *ends])])


def calibrate(g: Graph, tensors: Sequence[str], batches: Iterable[Dict[str, np.ndarray]]) -> Dict[str, Range]:
    """Per-tensor asymmetric ranges (min/max over ``batches``) of ``tensors``, from ONNX Runtime
    running the graph as it stands."""
    import onnx
    import onnxruntime as ort

    if not tensors:
        return {}
    g.finish()
    model = onnx.ModelProto()
    model.CopyFrom(g.model)
    model.graph.output.extend([onnx.helper.make_empty_tensor_value_info(name) for name in tensors])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    lows, highs = [], []
    for feeds in batches:
        values = session.run(list(tensors), feeds)
        lows.append([float(v.min()) for v in values])
        highs.append([float(v.max()) for v in values])
    if not lows:
        raise UserError("INT8 calibration needs at least one batch")
    low, high = np.min(lows, axis=0), np.max(highs, axis=0)
    return {name: Range(np.float32(lo), np.float32(hi), False) for name, lo, hi in zip(tensors, low, high)}
