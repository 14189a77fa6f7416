"""Exact GELU in ONNX files: MindSpore's ONNX exporter has no ``Erf`` ("Can not find key Erf in
convert map"), which every BERT (``hidden_act: gelu``, as Hugging Face's) uses.

While exporting, each ``nn.GELU(approximate=False)`` is swapped for the same formula with
``Softsign`` standing in for ``erf`` (an op the exporter maps and the zoo's models do not use);
the written graph then gets ``Erf`` back in place of each stand-in. The file computes
``0.5 * x * (1 + erf(x / sqrt(2)))`` exactly as the network and Hugging Face do.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, List, Tuple

from mindspore import nn, ops

from ms_suite.errors import UserError

STAND_IN = "Softsign"


class StandInGELU(nn.Cell):
    """GELU's graph with ``softsign`` where ``erf`` goes; only ever exported, never run."""

    def construct(self, x):
        return 0.5 * x * (1.0 + ops.softsign(x * (1.0 / math.sqrt(2.0))))


def _exact_gelus(net: nn.Cell) -> List[Tuple[nn.Cell, str, nn.Cell]]:
    """(parent, attribute, cell) of every exact GELU in ``net``."""
    found = []
    for _, parent in net.cells_and_names():
        for attribute, child in parent.name_cells().items():
            if isinstance(child, nn.GELU) and child.approximate in (False, "none"):
                found.append((parent, attribute, child))
    return found


@contextlib.contextmanager
def erf_stand_ins(net: nn.Cell) -> Iterator[int]:
    """Swap exact GELUs for :class:`StandInGELU` for the duration; yields how many were swapped."""
    swapped = _exact_gelus(net)
    for parent, attribute, _ in swapped:
        setattr(parent, attribute, StandInGELU())
    try:
        yield len(swapped)
    finally:
        for parent, attribute, original in swapped:
            setattr(parent, attribute, original)


def restore_erf(model, expected: int) -> None:
    """Turn the stand-ins of an exported ONNX ``model`` into ``Erf`` nodes."""
    stand_ins = [node for node in model.graph.node if node.op_type == STAND_IN]
    if len(stand_ins) != expected:
        raise UserError(f"the exported graph has {len(stand_ins)} {STAND_IN} nodes for {expected} GELUs; "
                        f"a model that uses {STAND_IN} itself cannot take the Erf stand-in")
    for node in stand_ins:
        node.op_type = "Erf"

