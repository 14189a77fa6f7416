"""BERT trainer tasks: ``bert-pretraining`` (masked LM + next sentence), ``text-classification``
and ``token-classification``.

Both build the model from the recipe (an HF directory or checkpoint in ``model.pretrained``, or
fresh weights whose vocabulary follows the data's ``vocab.txt``), check it against the data
(sequence length, vocabulary) and lay it out for model/pipeline parallelism when asked.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from ms_suite.config import Config
from ms_suite.data import TextInfo, text_info
from ms_suite.data.text import IGNORE_LABEL, read_vocab
from ms_suite.engine.evaluate import Outputs, eval_mode, pad_batch, predict_batches
from ms_suite.engine.loss import CrossEntropy
from ms_suite.engine.tasks.base import Task, register_task
from ms_suite.errors import UserError
from ms_suite.models import create_model, model_info
from ms_suite.runtime.auto_parallel import (apply_layout, check_device, check_layout, check_single_device_build,
                                            pipeline_loss, uses_auto_parallel)


# --------------------------------------------------------------------------- model checks


def _pretrained_vocab(path: Optional[str]) -> Optional[str]:
    if path and os.path.isdir(path) and os.path.isfile(os.path.join(path, "vocab.txt")):
        return os.path.join(path, "vocab.txt")
    return None


def check_fits(config, info: TextInfo, cfg: Config) -> None:
    """The data's sequence length and vocabulary must fit the model (and its checkpoint)."""
    if info.seq_len > config.max_position_embeddings:
        raise UserError(f"data.seq_len {info.seq_len} exceeds the model's max_position_embeddings "
                        f"{config.max_position_embeddings}; lower data.seq_len")
    if info.vocab_size is not None and info.vocab_size > config.vocab_size:
        raise UserError(f"vocab mismatch: {info.vocab_file} has {info.vocab_size} tokens but the model's vocab_size "
                        f"is {config.vocab_size}; use the checkpoint's own vocab.txt")
    own_vocab = _pretrained_vocab(cfg.model.pretrained)
    if own_vocab and info.vocab_file and read_vocab(own_vocab) != read_vocab(info.vocab_file):
        raise UserError(f"vocab mismatch: {info.vocab_file} differs from the checkpoint's {own_vocab}; "
                        f"set data.vocab to {cfg.model.pretrained}")


def lay_out_model(net: nn.Cell, cfg: Config) -> None:
    """Lay the model out for tensor/pipeline parallelism as its family declares (``ModelInfo.parallel_layout``)."""
    parallel = cfg.parallel
    check_device(parallel, ms.get_context("device_target"))
    declared = model_info(cfg.model.name).parallel_layout
    if declared is None:
        return
    layout = declared(net)
    if uses_auto_parallel(parallel):
        from mindspore.communication import get_group_size

        check_layout(parallel, get_group_size(), layout.shape, cfg.train.batch_size)
    apply_layout(parallel, layout)


def _zeros(batch_size: int, seq_len: int) -> Tuple[Tensor, ...]:
    return tuple(Tensor(np.zeros((batch_size, seq_len), np.int32)) for _ in range(3))


def forward(net: nn.Cell, batch_size: int, *inputs: np.ndarray):
    """``net``'s output(s) as numpy for a batch padded to ``batch_size``, the padding dropped."""
    out = net(*(Tensor(pad_batch(a, batch_size)) for a in inputs))
    rows = len(inputs[0])
    return tuple(x.asnumpy()[:rows] for x in out) if isinstance(out, (tuple, list)) else out.asnumpy()[:rows]


def _softmax_ce(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy in float64."""
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -np.take_along_axis(log_probs, labels[..., None].astype(np.int64), axis=-1)[..., 0]


class _BertTask(Task):
    def build_model(self, cfg, data_info):
        check_single_device_build(cfg.parallel)  # eval/export of a semi-auto recipe: merged weights only
        available = data_info.num_samples.get("train", 0) > 0  # export without the data: no data checks
        info = text_info(cfg.data) if available else None
        kwargs = dict(cfg.model.kwargs)
        if info is not None and info.vocab_size and not _pretrained_vocab(cfg.model.pretrained):
            kwargs.setdefault("vocab_size", info.vocab_size)  # unless an HF config says otherwise: the data's
        num_classes = cfg.model.num_classes or data_info.num_classes
        net = create_model(cfg.model.name, num_classes=num_classes, pretrained=cfg.model.pretrained, **kwargs)
        if info is not None:
            check_fits(net.config, info, cfg)
        lay_out_model(net, cfg)
        return net, num_classes

    def example_inputs(self, cfg, data_info, batch_size):
        return _zeros(batch_size, cfg.data.seq_len or data_info.input_shape[0])


# --------------------------------------------------------------------------- pretraining


class PretrainingLoss(nn.Cell):
    """Masked-LM cross-entropy averaged over predicted tokens + next-sentence cross-entropy."""

    def __init__(self, net: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net = net
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, input_ids, input_mask, segment_ids, next_sentence_labels, masked_lm_positions,
                  masked_lm_ids, masked_lm_weights):
        mlm, nsp = self.net(input_ids, input_mask, segment_ids, masked_lm_positions)
        mlm_nll = -ops.gather_elements(self.log_softmax(mlm), -1, masked_lm_ids.astype(ms.int32).expand_dims(-1))
        weights = masked_lm_weights.astype(ms.float32)
        mlm_loss = (mlm_nll.squeeze(-1) * weights).sum() / (weights.sum() + 1e-5)
        labels = next_sentence_labels.reshape(-1).astype(ms.int32)
        nsp_nll = -ops.gather_elements(self.log_softmax(nsp), -1, labels.expand_dims(-1))
        return mlm_loss + nsp_nll.mean()


@register_task("bert-pretraining")
class BertPretrainingTask(_BertTask):
    """Batches of (input_ids, input_mask, segment_ids, next_sentence_labels, masked_lm_positions,
    masked_lm_ids, masked_lm_weights); metrics mlm_accuracy, nsp_accuracy (percent) and losses."""

    monitor = "mlm_accuracy"
    has_classes = False  # its 2 outputs per pair are the next-sentence head, not data classes

    def loss_cell(self, net, cfg, num_classes):
        return pipeline_loss(PretrainingLoss(net), cfg.parallel)

    def predict(self, net, dataset, batch_size):
        def score(ids, mask, segments, nsp_labels, positions, mlm_ids, weights):
            mlm, nsp = forward(net, batch_size, ids, mask, segments, positions)
            nsp_labels = nsp_labels.reshape(-1)
            return {"mlm_correct": ((mlm.argmax(-1) == mlm_ids) * weights).sum(-1),
                    "mlm_nll": (_softmax_ce(mlm, mlm_ids) * weights).sum(-1), "mlm_count": weights.sum(-1),
                    "nsp_correct": nsp.argmax(-1) == nsp_labels, "nsp_nll": _softmax_ce(nsp, nsp_labels)}

        with eval_mode(net):
            return predict_batches(dataset, score)

    def metrics(self, outputs):
        if not outputs:
            return {}
        count = len(outputs["nsp_nll"])
        tokens = max(float(outputs["mlm_count"].sum()), 1.0)
        mlm_loss, nsp_loss = float(outputs["mlm_nll"].sum()) / tokens, float(outputs["nsp_nll"].sum()) / count
        return {"mlm_accuracy": 100.0 * float(outputs["mlm_correct"].sum()) / tokens, "mlm_loss": mlm_loss,
                "nsp_accuracy": 100.0 * float(outputs["nsp_correct"].sum()) / count, "nsp_loss": nsp_loss,
                "loss": mlm_loss + nsp_loss, "samples": count}


# --------------------------------------------------------------------------- sequence classification


class ClassificationLoss(nn.Cell):
    """Cross-entropy of ``net(input_ids, input_mask, segment_ids)`` against ``label``."""

    def __init__(self, net: nn.Cell, loss: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net = net
        self.loss = loss

    def construct(self, input_ids, input_mask, segment_ids, label):
        return self.loss(self.net(input_ids, input_mask, segment_ids), label)


def classification_scores(predictions: np.ndarray, labels: np.ndarray) -> Dict[str, float]:
    """Accuracy and F1 macro-averaged over the classes that are predicted or present, both in percent."""
    f1s = []
    for c in np.union1d(predictions, labels):
        tp = float(((predictions == c) & (labels == c)).sum())
        predicted, actual = float((predictions == c).sum()), float((labels == c).sum())
        f1s.append(2 * tp / (predicted + actual))
    return {"accuracy": 100.0 * float((predictions == labels).mean()), "f1": 100.0 * float(np.mean(f1s))}


def predict_classes(net: nn.Cell, dataset, batch_size: int) -> Outputs:
    """Per sample of a labelled text dataset: predicted class, label and cross-entropy; for token
    labels (B, S) per token, IGNORE_LABEL where unlabelled."""
    def score(ids, mask, segments, label):
        logits = forward(net, batch_size, ids, mask, segments)
        return {"prediction": logits.argmax(-1), "label": label,
                "nll": _softmax_ce(logits, np.where(label == IGNORE_LABEL, 0, label))}

    with eval_mode(net):
        return predict_batches(dataset, score)


def classifier_metrics(outputs: Outputs) -> Dict[str, float]:
    """Accuracy, macro F1 and loss over the labelled samples or tokens (``samples`` counts them)."""
    if not outputs:
        return {}
    keep = outputs["label"] != IGNORE_LABEL
    labels = outputs["label"][keep]
    return {**classification_scores(outputs["prediction"][keep], labels),
            "loss": float(outputs["nll"][keep].mean()), "samples": len(labels)}


class _ClassifierTask(_BertTask):
    """Scores a predicted class per sample (or per token)."""

    monitor = "accuracy"

    def predict(self, net, dataset, batch_size):
        return predict_classes(net, dataset, batch_size)

    def metrics(self, outputs):
        return classifier_metrics(outputs)


@register_task("text-classification")
class TextClassificationTask(_ClassifierTask):
    """Batches of (input_ids, input_mask, segment_ids, label); metrics accuracy, macro F1, loss."""

    def loss_cell(self, net, cfg, num_classes):
        loss = ClassificationLoss(net, CrossEntropy(num_classes, cfg.train.label_smoothing))
        return pipeline_loss(loss, cfg.parallel)


# --------------------------------------------------------------------------- token classification


class TokenClassificationLoss(nn.Cell):
    """Cross-entropy over the labelled tokens (label IGNORE_LABEL elsewhere)."""

    def __init__(self, net: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net = net
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, input_ids, input_mask, segment_ids, label):
        log_probs = self.log_softmax(self.net(input_ids, input_mask, segment_ids))
        label = label.astype(ms.int32)
        weights = (label != IGNORE_LABEL).astype(ms.float32)
        nll = -ops.gather_elements(log_probs, -1, ops.maximum(label, 0).expand_dims(-1)).squeeze(-1)
        return (nll * weights).sum() / (weights.sum() + 1e-5)


@register_task("token-classification")
class TokenClassificationTask(_ClassifierTask):
    """Batches of (input_ids, input_mask, segment_ids, label (B, S) with IGNORE_LABEL where unlabelled);
    metrics over the labelled tokens: accuracy, macro F1 over tags, loss."""

    def loss_cell(self, net, cfg, num_classes):
        return pipeline_loss(TokenClassificationLoss(net), cfg.parallel)

