"""The data-parallel gradient all-reduce: MindSpore's reducer, or one in a chosen dtype and buckets.

``build_grad_reducer`` returns ``nn.DistributedGradReducer`` for the default settings (float32,
``buckets`` null), exactly what TrainStep always ran. Otherwise :class:`BucketedGradReducer`:

- ``dtype`` float16/bfloat16 casts each gradient before the all-reduce and back after, halving
  the bytes on the wire (``DistributedGradReducer`` itself casts everything to float32 first;
  on MindSpore 2.7.2's CPU transport float16 measured slower, docs/results/data-parallel.md);
- ``buckets`` N packs the gradients, in backward order (last layer first), into N flat buffers
  of about equal bytes, one AllReduce each. MindSpore's own fusion (``fusion`` attribute, set by
  ``all_reduce_fusion_config``) is a backend pass; packing in the graph fuses on every backend,
  CPU included. ``buckets: 0`` keeps one AllReduce per gradient.

With 2 ranks a float32 sum is the same in any order, so float32 with any ``buckets`` gives the
same bits as the default; with more ranks the ring order may differ in the last bit.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import mindspore as ms
from mindspore import nn, ops

DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16}


def bucket_bounds(sizes: Sequence[int], buckets: int) -> List[int]:
    """Start indices into ``sizes`` (in order) of ``buckets`` runs of about equal total size."""
    total, bounds, acc = sum(sizes), [0], 0
    for i, size in enumerate(sizes[:-1]):
        acc += size
        if len(bounds) < buckets and acc >= total * len(bounds) / buckets:
            bounds.append(i + 1)
    return bounds


class BucketedGradReducer(nn.Cell):
    """Mean of each gradient over the ranks, all-reduced in ``dtype`` and in ``buckets`` flat buffers."""

    def __init__(self, params: Sequence, dtype: str = "float32", buckets: int = 0):
        super().__init__(auto_prefix=False)
        from mindspore.communication import get_group_size

        self.dtype = DTYPES[dtype]
        self.scale = 1.0 / get_group_size()
        self.count = len(params)
        self.shapes = [tuple(p.shape) for p in params]
        order = list(range(self.count))[::-1]  # backward produces the last layers' gradients first
        sizes = [_numel(self.shapes[i]) for i in order]
        starts = bucket_bounds(sizes, buckets) if buckets > 0 else list(range(self.count))
        ends = starts[1:] + [self.count]
        self.groups = [tuple(order[s:e]) for s, e in zip(starts, ends)]
        self.sizes = [tuple(_numel(self.shapes[i]) for i in group) for group in self.groups]
        # fusion 0: the backend must not merge these again
        self.all_reduces = tuple(ops.AllReduce().add_prim_attr("fusion", 0) for _ in self.groups)
        flat_order = [i for group in self.groups for i in group]
        self.position = tuple(flat_order.index(i) for i in range(self.count))

    def construct(self, grads):
        reduced = []
        for group, sizes, all_reduce in zip(self.groups, self.sizes, self.all_reduces):
            parts = [grads[i].astype(self.dtype).reshape(-1) for i in group]
            flat = all_reduce(ops.concat(parts) if len(parts) > 1 else parts[0])
            pieces = ops.split(flat, sizes) if len(parts) > 1 else (flat,)
            for i, piece in zip(group, pieces):
                reduced.append(piece.reshape(self.shapes[i]).astype(grads[i].dtype) * self.scale)
        return tuple([reduced[p] for p in self.position])


def _numel(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def build_grad_reducer(params, dtype: str = "float32", buckets: Optional[int] = None) -> nn.Cell:
    """MindSpore's ``DistributedGradReducer`` for the defaults, else a :class:`BucketedGradReducer`."""
    if dtype == "float32" and buckets is None:
        return nn.DistributedGradReducer(params)
    return BucketedGradReducer(params, dtype, 0 if buckets is None else buckets)
