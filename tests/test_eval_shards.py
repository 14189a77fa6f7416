"""Sharded evaluation: per-sample outputs of consecutive eval shards join into the single-process
outputs, and the metrics computed from them match scikit-learn. (The 2-rank msrun job that gathers
the shards across processes is in test_launch.py.)"""
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss, top_k_accuracy_score

from conftest import ROOT, TINY
from ms_suite.data.datasets import eval_shard
from ms_suite.data.text import IGNORE_LABEL
from ms_suite.engine.tasks.bert import classifier_metrics
from ms_suite.engine.evaluate import classification_metrics, join_samples, sample_scores


def _shards(n: int, batch_size: int, num_shards: int):
    return [eval_shard(n, batch_size, num_shards, k) for k in range(num_shards)]


def test_image_metrics_from_joined_shards_match_sklearn():
    rng = np.random.RandomState(0)
    logits, labels = rng.randn(203, 12), rng.randint(0, 12, 203)
    parts = [sample_scores(logits[s], labels[s]) for s in _shards(203, 16, 3)]
    metrics = classification_metrics(join_samples(parts))
    assert metrics == classification_metrics(sample_scores(logits, labels))  # exactly the one-process value
    classes = np.arange(12)
    assert metrics["samples"] == 203
    assert metrics["top1"] == pytest.approx(100 * top_k_accuracy_score(labels, logits, k=1, labels=classes), abs=1e-9)
    assert metrics["top5"] == pytest.approx(100 * top_k_accuracy_score(labels, logits, k=5, labels=classes), abs=1e-9)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert metrics["loss"] == pytest.approx(log_loss(labels, probs, labels=classes), rel=1e-9)


def test_token_metrics_skip_unlabelled_tokens_and_match_sklearn():
    rng = np.random.RandomState(1)
    labels = rng.randint(0, 4, (37, 9))
    labels[rng.rand(37, 9) < 0.3] = IGNORE_LABEL
    predictions = np.where(rng.rand(37, 9) < 0.7, labels, rng.randint(0, 5, (37, 9)))  # class 4 only predicted
    nll = rng.rand(37, 9)
    outputs = {"prediction": predictions, "label": labels, "nll": nll}
    parts = [{key: value[s] for key, value in outputs.items()} for s in _shards(37, 8, 2)]
    metrics = classifier_metrics(join_samples(parts))
    assert metrics == classifier_metrics(outputs)
    keep = labels != IGNORE_LABEL
    assert metrics["samples"] == keep.sum()
    assert metrics["accuracy"] == pytest.approx(100 * accuracy_score(labels[keep], predictions[keep]), abs=1e-9)
    assert metrics["f1"] == pytest.approx(100 * f1_score(labels[keep], predictions[keep], average="macro"), abs=1e-9)
    assert metrics["loss"] == pytest.approx(nll[keep].mean(), rel=1e-12)


def test_an_empty_shard_adds_nothing():
    part = {"top1": np.array([True]), "top5": np.array([True]), "loss": np.array([0.5])}
    assert join_samples([{}, part, {}]).keys() == part.keys()
    assert classification_metrics(join_samples([{}, {}])) == {}


@pytest.mark.slow
def test_shards_of_a_network_join_to_its_single_process_outputs():
    """The batches a shard feeds the network are the single-process batches (padding of the short
    last one included), so the joined per-sample outputs are bit-identical."""
    import os

    from ms_suite.config import load_config
    from ms_suite.data import build_dataset, dataset_info
    from ms_suite.engine.tasks import get_task
    from ms_suite.runtime import init_runtime

    cfg = load_config(os.path.join(ROOT, "configs/quickstart.yaml"), TINY)
    init_runtime(cfg.runtime, cfg.train.seed)
    info = dataset_info(cfg.data)
    task = get_task("image-classification")
    net, _ = task.build_model(cfg, info)
    batch = cfg.eval.batch_size
    single = task.predict(net, build_dataset(cfg.data, "eval", batch), batch)
    for shards in (2, 3):
        parts = [task.predict(net, build_dataset(cfg.data, "eval", batch, num_shards=shards, shard_id=k), batch)
                 for k in range(shards)]
        joined = join_samples(parts)
        assert joined.keys() == single.keys()
        for key in single:
            np.testing.assert_array_equal(joined[key], single[key], err_msg=key)
    metrics = task.metrics(single)
    assert metrics["samples"] == info.num_samples["eval"] == 360  # the padding of 360 = 2 x 128 + 104 is not counted
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 100
