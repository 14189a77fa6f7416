"""Dropout whose masks are a pure function of (seed, layer, step): reproducible runs, exact resume.

MindSpore 2.7.2's CPU ``Dropout`` kernel draws from a generator shared by its worker threads, so
two runs with the same ``mindspore.set_seed`` get different masks once a tensor is large enough
to be split across threads, and a resumed run restarts the generator. :class:`SeededDropout` acts
as ``nn.Dropout`` until :class:`DropoutSeeds` seeds it; from then on every element's keep/drop
decision hashes (seed, the cell's stream, the training position, the element's index) with integer
arithmetic. The position is set from the host before each micro-step, so a resumed run continues
with the masks of the uninterrupted one and the forward pass that reports the loss uses the same
masks as the one differentiated. The position must be a parameter of the compiled cell
(:meth:`DropoutSeeds.register_in`); checkpoints of that cell store it.
"""
from __future__ import annotations

from typing import List, Optional

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

_WORD = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _mix(x: Tensor) -> Tensor:
    """A 32-bit integer hash (xorshift-multiply rounds) on int64 values below 2**32; the multipliers
    are below 2**31, so no product overflows int64."""
    x = ops.bitwise_xor(x, x // 65536)
    x = ops.bitwise_and(x * 0x7FEB352D, _WORD)
    x = ops.bitwise_xor(x, x // 32768)
    x = ops.bitwise_and(x * 0x2C1B3C6D, _WORD)
    return ops.bitwise_xor(x, x // 65536)


class SeededDropout(nn.Cell):
    """``nn.Dropout(p)``; once seeded by :class:`DropoutSeeds`, with hashed (reproducible) masks."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.native = nn.Dropout(p=self.p)
        self.seed = 0
        self.stream = 0
        # Set by DropoutSeeds; a plain attribute (not a registered parameter), so the model's
        # weights and checkpoints stay those of nn.Dropout.
        object.__setattr__(self, "position", None)

    def construct(self, x):
        if not self.training or self.p == 0.0:
            return x
        if self.position is None:
            return self.native(x)
        base = _mix(ops.bitwise_xor(_mix(ops.bitwise_and(self.position * _GOLDEN + self.seed, _WORD)), self.stream))
        index = ops.arange(0, x.size, dtype=ms.int64).reshape(x.shape)
        uniform = ops.cast(_mix(ops.bitwise_xor(index, base)) // 256, ms.float32) * (1.0 / 16777216)
        return ops.select(uniform >= self.p, x / (1.0 - self.p), ops.zeros_like(x))


class DropoutSeeds:
    """Seed every :class:`SeededDropout` in ``net`` from ``seed`` (one stream per cell, in
    definition order; ``net=None`` seeds none); :meth:`set_position` picks the masks of a micro-step."""

    def __init__(self, net: Optional[nn.Cell], seed: int):
        cells = net.cells_and_names() if net is not None else ()
        self.cells: List[SeededDropout] = [cell for _, cell in cells if isinstance(cell, SeededDropout)]
        self.position = Parameter(Tensor(0, ms.int64), name="dropout_position", requires_grad=False)
        for stream, cell in enumerate(self.cells):
            cell.seed, cell.stream = int(seed) & _WORD, stream
            object.__setattr__(cell, "position", self.position)

    def register_in(self, top: nn.Cell) -> None:
        """Make the position a parameter of ``top``, the cell that gets compiled: a graph loaded
        from MindSpore's compile cache binds only registered parameters."""
        if self.cells:
            top.insert_param_to_cell(self.position.name, self.position)

    def set_position(self, micro_step: int) -> None:
        """Use the masks of micro-step ``micro_step`` (counted from the start of training)."""
        if self.cells:
            self.position.set_data(Tensor(micro_step, ms.int64))
