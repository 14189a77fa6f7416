"""Evaluation in two halves: per-sample outputs of a network over a dataset, then metrics from them.

Tasks compute their metrics from per-sample arrays (first axis: the sample, in dataset order).
Data-parallel ranks each predict their own eval shard (consecutive whole batches), the shards'
outputs are joined in rank order (:func:`join_samples`), which is the single-process order, and
every rank computes the metrics of the whole split from the same arrays.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterator, List, Tuple

import numpy as np
from mindspore import Tensor, nn

from ms_suite.runtime.distributed import DistInfo, all_gather_arrays

Outputs = Dict[str, np.ndarray]


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """Pad the last (short) batch so graph mode reuses the one compiled shape."""
    if len(batch) == size:
        return batch
    pad = np.zeros((size - len(batch),) + batch.shape[1:], dtype=batch.dtype)
    return np.concatenate([batch, pad])


@contextlib.contextmanager
def eval_mode(net: nn.Cell) -> Iterator[nn.Cell]:
    """``net`` in inference mode for the block, then back in the mode it was in."""
    was_training = net.training
    net.set_train(False)
    try:
        yield net
    finally:
        net.set_train(was_training)


def join_samples(parts: List[Outputs]) -> Outputs:
    """Per-sample outputs of consecutive parts (batches or shards) as one set; empty parts add nothing."""
    filled = [part for part in parts if part]
    return {key: np.concatenate([part[key] for part in filled]) for key in filled[0]} if filled else {}


def num_samples(outputs: Outputs) -> int:
    """The samples in per-sample outputs."""
    return len(next(iter(outputs.values()))) if outputs else 0


def gather_samples(outputs: Outputs, dist: DistInfo) -> Tuple[Outputs, List[int]]:
    """Every data-parallel rank's per-sample outputs joined in rank order (rank ``k`` holds the
    ``k``-th run of consecutive eval batches, so this is the single-process order), and the number
    of samples each rank contributed."""
    parts = all_gather_arrays(outputs) if dist.replicated else [outputs]
    return join_samples(parts), [num_samples(part) for part in parts]


def predict_batches(dataset, score: Callable[..., Outputs]) -> Outputs:
    """``score(*columns)`` of every batch of ``dataset`` (numpy columns), joined in dataset order."""
    return join_samples([score(*columns) for columns in
                         dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)])


def predict_logits(net: nn.Cell, images: np.ndarray, batch_size: int) -> np.ndarray:
    """float64 logits of ``images``; the padding of a short batch is dropped."""
    return net(Tensor(pad_batch(images, batch_size))).asnumpy()[: len(images)].astype(np.float64)


def sample_scores(logits: np.ndarray, labels: np.ndarray) -> Outputs:
    """Per sample: top-1 and top-5 hit and cross-entropy (float64)."""
    if labels.ndim == 2:  # one-hot / soft labels
        labels = labels.argmax(axis=1)
    labels = labels.astype(np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    top_k = np.argsort(-logits, axis=1)[:, :min(5, logits.shape[1])]
    return {"top1": top_k[:, 0] == labels, "top5": (top_k == labels[:, None]).any(axis=1),
            "loss": -log_probs[np.arange(len(labels)), labels]}


def predict(net: nn.Cell, dataset, batch_size: int) -> Outputs:
    """Per-sample scores (:func:`sample_scores`) of ``net`` over a dataset of (images, labels)."""
    with eval_mode(net):
        return predict_batches(dataset, lambda images, labels: sample_scores(
            predict_logits(net, images, batch_size), labels))


def classification_metrics(outputs: Outputs) -> Dict[str, float]:
    """Top-1 and top-5 accuracy (percent) and mean loss of per-sample scores."""
    if not outputs:
        return {}
    count = len(outputs["loss"])
    return {"top1": 100.0 * float(outputs["top1"].sum()) / count,
            "top5": 100.0 * float(outputs["top5"].sum()) / count,
            "loss": float(outputs["loss"].sum()) / count, "samples": count}
