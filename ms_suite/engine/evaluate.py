"""Evaluation: top-1/top-5 accuracy and loss over a dataset, with a fixed batch shape."""
from __future__ import annotations

from typing import Dict

import numpy as np
from mindspore import Tensor, nn


def _pad_to(batch: np.ndarray, size: int) -> np.ndarray:
    """Pad the last (short) batch so graph mode reuses the one compiled shape."""
    if len(batch) == size:
        return batch
    pad = np.zeros((size - len(batch),) + batch.shape[1:], dtype=batch.dtype)
    return np.concatenate([batch, pad])


def predict_logits(net: nn.Cell, images: np.ndarray, batch_size: int) -> np.ndarray:
    return net(Tensor(_pad_to(images, batch_size))).asnumpy()[: len(images)].astype(np.float64)


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Sums (not means) of correct top-1/top-5 and cross-entropy, for accumulation over batches."""
    if labels.ndim == 2:  # one-hot / soft labels
        labels = labels.argmax(axis=1)
    labels = labels.astype(np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    k = min(5, logits.shape[1])
    top_k = np.argsort(-logits, axis=1)[:, :k]
    return {
        "top1": float((top_k[:, 0] == labels).sum()),
        "top5": float((top_k == labels[:, None]).any(axis=1).sum()),
        "loss": float(-log_probs[np.arange(len(labels)), labels].sum()),
    }


def evaluate(net: nn.Cell, dataset, batch_size: int) -> Dict[str, float]:
    """Top-1 and top-5 accuracy (percent) and mean loss of ``net`` over ``dataset``."""
    was_training = net.training
    net.set_train(False)
    totals = {"top1": 0.0, "top5": 0.0, "loss": 0.0}
    count = 0
    for images, labels in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        logits = predict_logits(net, images, batch_size)
        for key, value in classification_metrics(logits, labels).items():
            totals[key] += value
        count += len(images)
    net.set_train(was_training)
    if count == 0:
        return {}
    return {"top1": 100.0 * totals["top1"] / count, "top5": 100.0 * totals["top5"] / count,
            "loss": totals["loss"] / count, "samples": count}
