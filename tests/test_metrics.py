"""Evaluation metrics against scikit-learn: top-1/top-5 accuracy and cross-entropy (images),
accuracy and macro F1 (text classification and tagging)."""
import mindspore as ms
import mindspore.dataset as ds
import numpy as np
import pytest
from mindspore import nn
from sklearn.metrics import accuracy_score, f1_score, log_loss, top_k_accuracy_score

from ms_suite.engine.tasks.bert import classification_scores
from ms_suite.engine.evaluate import classification_metrics, sample_scores
from ms_suite.engine.tasks import get_task


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("classes", [3, 10])
def test_top1_top5_and_loss_match_sklearn(classes):
    rng = np.random.default_rng(classes)
    logits = rng.normal(size=(97, classes)) * 3
    labels = rng.integers(0, classes, 97)
    got = classification_metrics(sample_scores(logits, labels))
    every = list(range(classes))
    assert got["samples"] == 97
    assert got["top1"] == pytest.approx(100 * top_k_accuracy_score(labels, logits, k=1, labels=every))
    k = min(5, classes)
    want_top5 = 100 * top_k_accuracy_score(labels, logits, k=k, labels=every) if k < classes else 100.0
    assert got["top5"] == pytest.approx(want_top5)
    assert got["loss"] == pytest.approx(log_loss(labels, _softmax(logits), labels=every), rel=1e-9)
    one_hot = np.eye(classes)[labels]
    assert classification_metrics(sample_scores(logits, one_hot)) == got  # one-hot labels score by their argmax


def test_evaluate_over_short_last_batch_matches_sklearn():
    ms.set_seed(0)
    net = nn.Dense(6, 10)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(23, 6)).astype(np.float32)
    labels = rng.integers(0, 10, 23).astype(np.int32)
    data = ds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False).batch(8)  # 8, 8, 7
    got = get_task("image-classification").evaluate(net, data, 8)
    logits = net(ms.Tensor(images)).asnumpy().astype(np.float64)
    assert got["samples"] == 23
    assert got["top1"] == pytest.approx(100 * accuracy_score(labels, logits.argmax(1)))
    assert got["top5"] == pytest.approx(100 * top_k_accuracy_score(labels, logits, k=5, labels=list(range(10))))
    assert got["loss"] == pytest.approx(log_loss(labels, _softmax(logits), labels=list(range(10))), rel=1e-5)


@pytest.mark.parametrize("classes, absent", [(4, None), (6, 5)])  # a class nobody predicts nor labels
def test_accuracy_and_macro_f1_match_sklearn(classes, absent):
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, 200)
    predictions = np.where(rng.random(200) < 0.6, labels, rng.integers(0, classes, 200))
    if absent is not None:
        labels[labels == absent] = 0
        predictions[predictions == absent] = 1
    got = classification_scores(predictions, labels)
    assert got["accuracy"] == pytest.approx(100 * accuracy_score(labels, predictions))
    assert got["f1"] == pytest.approx(100 * f1_score(labels, predictions, average="macro"))
