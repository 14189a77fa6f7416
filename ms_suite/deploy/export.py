"""Write a network to a deployable file: MINDIR (dynamic batch), ONNX (named inputs/outputs,
dynamic batch, and dynamic sequence where the graph allows it), AIR (Ascend only).

MindSpore's ONNX exporter writes fixed shapes and numbered tensor names. The suite exports at two
sizes of each axis, and where the two graphs differ only in the dimensions of their inputs,
outputs and Reshape targets, it writes one graph with that axis symbolic. Any other difference
(a constant whose length is the axis, e.g. BERT's position ids) keeps the axis fixed; the reason is
recorded in the file's manifest.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

from ms_suite.deploy.onnx_gelu import erf_stand_ins, restore_erf
from ms_suite.errors import UserError
from ms_suite.runtime.device import select_device

FORMATS = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
FILE_MODE = 0o644  # MindSpore writes exports read-only (0400); deployable files are ordinary files


@dataclasses.dataclass
class Signature:
    """Names of a network's inputs and outputs, and its variable axes: ``{axis: name}`` per input
    (outputs share the leading axes of the first input)."""

    inputs: Tuple[str, ...]
    outputs: Tuple[str, ...]
    axes: Dict[int, str]


# The names an exported file carries, by the model's task (feature extraction: the bare BERT encoder).
_BERT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
SIGNATURES = {
    "image-classification": Signature(("image",), ("logits",), {0: "batch"}),
    "text-classification": Signature(_BERT_INPUTS, ("logits",), {0: "batch", 1: "sequence"}),
    "token-classification": Signature(_BERT_INPUTS, ("logits",), {0: "batch", 1: "sequence"}),
    "bert-pretraining": Signature(_BERT_INPUTS, ("prediction_scores", "seq_relationship_score"),
                                  {0: "batch", 1: "sequence"}),
    "feature-extraction": Signature(_BERT_INPUTS, ("sequence_output", "pooled_output"), {0: "batch", 1: "sequence"}),
}


def signature(task_name: str) -> Signature:
    if task_name not in SIGNATURES:
        raise UserError(f"export has no input/output names for task {task_name!r} (known: {', '.join(SIGNATURES)})")
    return SIGNATURES[task_name]


def resolve_format(output: str, requested: Optional[str], default: str) -> str:
    """The format to write: ``requested``, else the one ``output``'s extension names, else ``default``."""
    extension = os.path.splitext(output)[1].lower()
    implied = next((fmt for fmt, ext in FORMATS.items() if ext == extension), None)
    if requested and implied and requested != implied:
        raise UserError(f"--output {output} ends in {extension} but --format is {requested}; "
                        f"name the file *{FORMATS[requested]} or pass --format {implied}")
    return requested or implied or default


def check_device(fmt: str, requested_device: str) -> None:
    """AIR files are written by the Ascend toolchain (GE); refuse them elsewhere up front."""
    if fmt != "AIR":
        return
    device = select_device(requested_device)[0]
    if device != "Ascend":
        raise UserError(f"--format AIR needs runtime.device=Ascend (MindSpore writes AIR through the Ascend "
                        f"toolchain); on {device} export MINDIR or ONNX and convert on the Ascend host with ATC "
                        "(docs/guides/deployment.md)")


def output_path(output: str, fmt: str) -> str:
    """``output`` with the format's extension (MindSpore appends it to names without one)."""
    base, extension = os.path.splitext(output)
    return output if extension.lower() == FORMATS[fmt] else output + FORMATS[fmt]


def export_model(net: nn.Cell, inputs: Sequence[Tensor], output: str, fmt: str, sig: Signature) -> Tuple[str, dict]:
    """Export ``net`` in eval mode; returns (path written, notes on the variable axes)."""
    net.set_train(False)
    path = output_path(output, fmt)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if fmt == "ONNX":
        notes = _export_onnx(net, inputs, path, sig)
    else:
        notes = {}
        shaped = _symbolic_inputs(inputs, sig) if fmt == "MINDIR" else inputs
        ms.export(net, *shaped, file_name=os.path.splitext(path)[0], file_format=fmt)
        if fmt == "MINDIR":
            notes = {name: "dynamic" for name in sig.axes.values()}
    os.chmod(path, FILE_MODE)
    return path, notes


def _symbolic_inputs(inputs: Sequence[Tensor], sig: Signature) -> List[Tensor]:
    """Input placeholders whose variable axes are ``None`` (a dynamic-shape MINDIR)."""
    shaped = []
    for tensor in inputs:
        shape = [None if axis in sig.axes else dim for axis, dim in enumerate(tensor.shape)]
        shaped.append(Tensor(shape=shape, dtype=tensor.dtype))
    return shaped


def _resized(inputs: Sequence[Tensor], axis: int, size: int) -> List[Tensor]:
    out = []
    for tensor in inputs:
        shape = list(tensor.shape)
        shape[axis] = size
        out.append(Tensor(np.zeros(shape, tensor.asnumpy().dtype)))
    return out


def _export_onnx_file(net: nn.Cell, inputs: Sequence[Tensor], path: str):
    """MindSpore's ONNX export of ``net`` at ``inputs``' shapes, exact GELUs as ``Erf``."""
    import onnx

    with erf_stand_ins(net) as gelus:
        ms.export(net, *inputs, file_name=os.path.splitext(path)[0], file_format="ONNX")
    os.chmod(path, FILE_MODE)
    model = onnx.load(path)
    restore_erf(model, gelus)
    return model


def _export_onnx(net: nn.Cell, inputs: Sequence[Tensor], path: str, sig: Signature) -> Dict[str, str]:
    import onnx

    for axis in sig.axes:  # size-1 axes export to other graphs (squeezes), so trace at 2 and 3 at least
        inputs = _resized(inputs, axis, max(2, inputs[0].shape[axis]))
    model = _export_onnx_file(net, inputs, path)
    notes = {}
    with tempfile.TemporaryDirectory() as tmp:
        for axis, name in sig.axes.items():
            size = inputs[0].shape[axis]
            other = _export_onnx_file(net, _resized(inputs, axis, size + 1), os.path.join(tmp, f"{name}.onnx"))
            notes[name] = make_axis_dynamic(model, other, name, size, size + 1) or "dynamic"
    rename_io(model, sig)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return notes


def rename_io(model, sig: Signature) -> None:
    """Give the graph's inputs and outputs ``sig``'s names (extra outputs: ``output_<i>``)."""
    renames = {value.name: name for value, name in zip(model.graph.input, sig.inputs)}
    for index, value in enumerate(model.graph.output):
        renames[value.name] = sig.outputs[index] if index < len(sig.outputs) else f"output_{index}"
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]


def _constants(model) -> Dict[str, np.ndarray]:
    """Every constant of the graph (initializers and Constant nodes) by name."""
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            found[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return found


def make_axis_dynamic(model, other, name: str, size: int, other_size: int) -> Optional[str]:
    """Make ``axis`` of ``model`` symbolic, given ``other`` (the same export with that axis at
    ``other_size``). Returns None on success, or why the axis stays fixed (``model`` untouched)."""
    from onnx import numpy_helper

    mine, theirs = _constants(model), _constants(other)
    if len(model.graph.node) != len(other.graph.node) or set(mine) != set(theirs):
        return f"the graphs exported at {name} {size} and {other_size} differ in structure"
    reshape_shapes = {node.input[1] for node in model.graph.node if node.op_type == "Reshape"}
    patches = {}
    for key, value in mine.items():
        if value.shape == theirs[key].shape and np.array_equal(value, theirs[key]):
            continue
        if key not in reshape_shapes or value.ndim != 1 or value.shape != theirs[key].shape:
            return (f"constant {key} (shape {list(value.shape)}) depends on the {name} length, "
                    "so MindSpore's exporter fixes it")
        differs = np.flatnonzero(value != theirs[key])
        if len(differs) != 1 or -1 in value:
            return f"Reshape target {key} {value.tolist()} has more than one {name}-dependent entry"
        patched = value.copy()
        patched[differs[0]] = -1
        patches[key] = patched
    for tensor in model.graph.initializer:
        if tensor.name in patches:
            tensor.CopyFrom(numpy_helper.from_array(patches[tensor.name], tensor.name))
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] in patches:
            node.attribute[0].t.CopyFrom(numpy_helper.from_array(patches[node.output[0]]))
    pairs = zip([*model.graph.input, *model.graph.output], [*other.graph.input, *other.graph.output])
    for value, counterpart in pairs:  # the dimensions that moved with the axis
        for dim, moved in zip(value.type.tensor_type.shape.dim, counterpart.type.tensor_type.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value != moved.dim_value:
                dim.dim_param = name
    del model.graph.value_info[:]  # intermediate shapes were fixed; ONNX Runtime infers them again
    return None
