"""Before/after measurements and ``compression_report.json``.

Parameters are counted in the exported MINDIR (every stored tensor: weights, biases, BatchNorm
statistics), so they describe exactly what is deployed.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.train.mind_ir_pb2 import ModelProto

from ms_suite.deploy import export_model, signature


FLOAT_BITS = 32
FAKE_QUANT_OP = "FakeQuantParam"


@dataclasses.dataclass
class Measurement:
    """One side of the report: a network's metric, cost and exported file."""

    metrics: Dict[str, float]  # of the deployed ONNX file over the eval split (else of the network)
    flops: int
    file: str               # the MINDIR
    size_mb: float          # the deployed ONNX file's size (else the MINDIR's)
    params: int             # parameter elements stored in the MINDIR
    weights_mb: float       # those parameters stored at their bit-width
    fake_quant_nodes: int   # FakeQuantParam nodes in the MINDIR
    mindir_mb: float = 0.0
    deployed_file: Optional[str] = None  # the ONNX file a CPU user deploys
    network_metrics: Optional[Dict[str, float]] = None  # of the network in memory


def read_mindir(path: str) -> ModelProto:
    """A MINDIR file's protobuf (graph nodes, parameters with their shapes)."""
    model = ModelProto()
    with open(path, "rb") as fh:
        model.ParseFromString(fh.read())
    return model


def mindir_stats(path: str) -> Tuple[int, int]:
    """(parameter elements, FakeQuantParam nodes) of a MINDIR file."""
    model = read_mindir(path)
    params = sum(int(np.prod(tensor.dims)) for tensor in model.graph.parameter)
    fake_quant = sum(FAKE_QUANT_OP in node.op_type for node in model.graph.node)
    return params, fake_quant


def measure(metrics: Dict[str, float], flops: int, net: nn.Cell, inputs: Sequence[ms.Tensor], path: str,
            task_name: str, layers: Sequence[Dict[str, Any]] = ()) -> Measurement:
    """Export ``net`` to ``path`` and read the file back; ``layers`` rows with ``weights`` and
    ``weight_bits`` shrink the packed weight size."""
    path, _ = export_model(net, inputs, path, "MINDIR", signature(task_name))
    params, fake_quant = mindir_stats(path)
    saved_bits = sum(row["weights"] * (FLOAT_BITS - row["weight_bits"]) for row in layers if "weight_bits" in row)
    size_mb = os.path.getsize(path) / 1e6
    return Measurement(metrics=metrics, flops=flops, file=path, size_mb=size_mb, mindir_mb=size_mb,
                       params=params, weights_mb=(params * FLOAT_BITS - saved_bits) / 8e6,
                       fake_quant_nodes=fake_quant)


def channel_rows(before: nn.Cell, after: nn.Cell) -> List[Dict[str, Any]]:
    """Output channels of every convolution and dense layer, before and after (matched by name)."""
    after_cells = dict(after.cells_and_names())
    rows = []
    for name, cell in before.cells_and_names():
        other = after_cells.get(name)
        if isinstance(cell, (nn.Conv2d, nn.Dense)) and isinstance(other, (nn.Conv2d, nn.Dense)):
            was, now = cell.weight.shape[0], other.weight.shape[0]
            rows.append({"layer": name, "channels_before": was, "channels_after": now,
                         "kept": f"{100.0 * now / was:.0f}%"})
    return rows


def build_report(header: Dict[str, Any], before: Measurement, after: Measurement,
                 layers: List[Dict[str, Any]], notes: Sequence[str], monitor: str) -> Dict[str, Any]:
    change = {key: after.metrics[key] - value for key, value in before.metrics.items()
              if key in after.metrics and key != "samples"}
    return {**header, "monitor": monitor, "before": dataclasses.asdict(before), "after": dataclasses.asdict(after),
            "change": {"metrics": change, "params_ratio": after.params / before.params,
                       "flops_ratio": after.flops / before.flops if before.flops else None,
                       "weights_mb_ratio": after.weights_mb / before.weights_mb},
            "layers": layers, "notes": list(notes)}


def write_report(report: Dict[str, Any], path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(report, fh, indent=2)
    os.replace(tmp, path)


def summary_rows(report: Dict[str, Any]) -> List[Tuple[str, str, str, str]]:
    """(quantity, before, after, change) rows for the console."""
    before, after = report["before"], report["after"]
    rows = []
    for key, delta in report["change"]["metrics"].items():
        rows.append((f"eval {key}", f"{before['metrics'][key]:.4g}", f"{after['metrics'][key]:.4g}", f"{delta:+.3g}"))
    for key, label, fmt in (("params", "parameters", "{:,}"), ("flops", "FLOPs", "{:,}"),
                            ("size_mb", "deployed file MB", "{:.3f}"), ("mindir_mb", "MINDIR MB", "{:.3f}"),
                            ("weights_mb", "weights at bit-width MB", "{:.3f}")):
        ratio = after[key] / before[key] if before[key] else float("nan")
        rows.append((label, fmt.format(before[key]), fmt.format(after[key]), f"x{ratio:.3f}"))
    return rows


def layer_rows(report: Dict[str, Any]) -> Tuple[List[str], List[List[Any]]]:
    """(headers, rows) of the per-layer table."""
    layers = report["layers"]
    headers = list(layers[0]) if layers else []
    return headers, [[row[key] for key in headers] for row in layers]
