"""BERT cells with Hugging Face transformers' layout, parameter names and initialisation: the encoder
and the task heads (:class:`BertForPreTraining`, :class:`BertForSequenceClassification`,
:class:`BertForTokenClassification`).

Parameter names follow HF's (``encoder.layer.0.attention.self.query.weight``); MindSpore's cells
name LayerNorm ``weight``/``bias`` as ``gamma``/``beta`` and an embedding's ``weight`` as
``embedding_table``, so importing HF weights is a rename (:mod:`model_zoo.bert.conversion`). The MLM
decoder reuses the word embeddings (tied), as in HF. Cells with matmuls outside a Dense declare their
FLOPs in a ``flops`` method (:func:`ms_suite.models.flops.count_flops`).
"""
from __future__ import annotations

import math
from typing import Optional

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal

from model_zoo.bert.configuration import ACTIVATIONS, BertConfig
from ms_suite.models.dropout import SeededDropout


def _dense(cin: int, cout: int, config: BertConfig) -> nn.Dense:
    return nn.Dense(cin, cout, weight_init=Normal(config.initializer_range), bias_init="zeros")


def _layer_norm(config: BertConfig) -> nn.LayerNorm:
    return nn.LayerNorm((config.hidden_size,), epsilon=config.layer_norm_eps)


def _embedding(rows: int, config: BertConfig, padding_idx: Optional[int] = None) -> nn.Embedding:
    return nn.Embedding(rows, config.hidden_size, embedding_table=Normal(config.initializer_range),
                        padding_idx=padding_idx)


class BertEmbeddings(nn.Cell):
    """Word + position + token-type embeddings, LayerNorm, dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.word_embeddings = _embedding(config.vocab_size, config, config.pad_token_id)
        self.position_embeddings = _embedding(config.max_position_embeddings, config)
        self.token_type_embeddings = _embedding(config.type_vocab_size, config)
        self.LayerNorm = _layer_norm(config)
        self.dropout = SeededDropout(p=config.hidden_dropout_prob)

    def construct(self, input_ids, token_type_ids):
        positions = ops.arange(input_ids.shape[1], dtype=ms.int32).expand_dims(0)
        embeddings = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
                      + self.token_type_embeddings(token_type_ids))
        return self.dropout(self.LayerNorm(embeddings))


class BertSelfAttention(nn.Cell):
    """Multi-head scaled dot-product attention; softmax in float32 (safe under AMP)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scale = 1.0 / math.sqrt(self.head_dim)
        self.query = _dense(config.hidden_size, config.hidden_size, config)
        self.key = _dense(config.hidden_size, config.hidden_size, config)
        self.value = _dense(config.hidden_size, config.hidden_size, config)
        self.scores_matmul = ops.BatchMatMul(transpose_b=True)
        self.context_matmul = ops.BatchMatMul()
        self.softmax = ops.Softmax(axis=-1)
        self.dropout = SeededDropout(p=config.attention_probs_dropout_prob)

    def _heads(self, x):
        """(B, S, H) -> (B, heads, S, head_dim)."""
        batch, seq, _ = x.shape
        return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def flops(self, inputs: tuple, output: ms.Tensor) -> int:
        """QK^T and probs @ V (the Dense projections are counted on their own)."""
        batch, seq, hidden = output.shape
        return 2 * 2 * batch * seq * seq * hidden

    def construct(self, hidden_states, mask_bias):
        query, key, value = (self._heads(self.query(hidden_states)), self._heads(self.key(hidden_states)),
                             self._heads(self.value(hidden_states)))
        scores = self.scores_matmul(query, key).astype(ms.float32) * self.scale + mask_bias
        probs = self.dropout(self.softmax(scores)).astype(value.dtype)
        context = self.context_matmul(probs, value).transpose(0, 2, 1, 3)
        batch, seq = context.shape[0], context.shape[1]
        return context.reshape(batch, seq, self.num_heads * self.head_dim)


class BertOutput(nn.Cell):
    """Projection to hidden size, dropout, residual and LayerNorm: HF's ``BertSelfOutput`` after
    attention (``in_features`` = hidden) and ``BertOutput`` after the FFN (= intermediate)."""

    def __init__(self, config: BertConfig, in_features: int):
        super().__init__()
        self.dense = _dense(in_features, config.hidden_size, config)
        self.LayerNorm = _layer_norm(config)
        self.dropout = SeededDropout(p=config.hidden_dropout_prob)

    def construct(self, hidden_states, residual):
        return self.LayerNorm(self.dropout(self.dense(hidden_states)) + residual)


class BertAttention(nn.Cell):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.self = BertSelfAttention(config)
        self.output = BertOutput(config, config.hidden_size)

    def construct(self, hidden_states, mask_bias):
        return self.output(self.self(hidden_states, mask_bias), hidden_states)


class BertIntermediate(nn.Cell):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = _dense(config.hidden_size, config.intermediate_size, config)
        self.intermediate_act_fn = ACTIVATIONS[config.hidden_act]()

    def construct(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class BertLayer(nn.Cell):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config, config.intermediate_size)

    def construct(self, hidden_states, mask_bias):
        attended = self.attention(hidden_states, mask_bias)
        return self.output(self.intermediate(attended), attended)


class BertEncoder(nn.Cell):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.layer = nn.CellList([BertLayer(config) for _ in range(config.num_hidden_layers)])

    def construct(self, hidden_states, mask_bias):
        for layer in self.layer:
            hidden_states = layer(hidden_states, mask_bias)
        return hidden_states


class BertPooler(nn.Cell):
    """tanh(dense(hidden state of [CLS]))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = _dense(config.hidden_size, config.hidden_size, config)
        self.activation = nn.Tanh()

    def construct(self, hidden_states):
        return self.activation(self.dense(hidden_states[:, 0]))


class BertModel(nn.Cell):
    """The encoder: ``model(input_ids, attention_mask=None, token_type_ids=None)`` ->
    ``(sequence_output (B, S, H), pooled_output (B, H))``, both float32.

    ``attention_mask`` is 1 for real tokens and 0 for padding (default: all ones);
    ``token_type_ids`` default to zeros. Ids may be any integer or float dtype.
    """

    base_model_prefix = ""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config)

    def construct(self, input_ids, attention_mask=None, token_type_ids=None):
        input_ids = input_ids.astype(ms.int32)
        if attention_mask is None:
            attention_mask = ops.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = ops.zeros_like(input_ids)
        # 0 where attended, -10000 at padding: exp() underflows to 0 in float32, and it fits float16.
        mask_bias = (1.0 - attention_mask.astype(ms.float32)).expand_dims(1).expand_dims(1) * -10000.0
        hidden = self.encoder(self.embeddings(input_ids, token_type_ids.astype(ms.int32)), mask_bias)
        return hidden.astype(ms.float32), self.pooler(hidden).astype(ms.float32)


# --------------------------------------------------------------------------- task heads


class BertPredictionHeadTransform(nn.Cell):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = _dense(config.hidden_size, config.hidden_size, config)
        self.transform_act_fn = ACTIVATIONS[config.hidden_act]()
        self.LayerNorm = _layer_norm(config)

    def construct(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class BertLMPredictionHead(nn.Cell):
    """Masked-LM logits; the decoder matrix is the word-embedding table passed in (tied)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.transform = BertPredictionHeadTransform(config)
        self.bias = Parameter(Tensor(np.zeros(config.vocab_size, np.float32)), name="bias")
        self.decoder_matmul = ops.MatMul(transpose_b=True)

    def flops(self, inputs: tuple, output: ms.Tensor) -> int:
        """The tied decoder matmul (the transform's Dense is counted on its own)."""
        rows = output.size // output.shape[-1]
        return 2 * rows * inputs[1].shape[1] * output.shape[-1]

    def construct(self, hidden_states, embedding_table):
        hidden = self.transform(hidden_states)
        flat = hidden.reshape(-1, hidden.shape[-1])
        logits = self.decoder_matmul(flat, embedding_table.astype(flat.dtype)) + self.bias.astype(flat.dtype)
        return logits.reshape(hidden.shape[:-1] + (logits.shape[-1],))  # no -1: ONNX keeps a dynamic batch


class BertPreTrainingHeads(nn.Cell):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.predictions = BertLMPredictionHead(config)
        self.seq_relationship = _dense(config.hidden_size, 2, config)

    def construct(self, sequence_output, pooled_output, embedding_table):
        return self.predictions(sequence_output, embedding_table), self.seq_relationship(pooled_output)


class BertForPreTraining(nn.Cell):
    """Encoder + MLM head (tied decoder) + next-sentence head.

    ``construct(input_ids, attention_mask=None, token_type_ids=None, masked_lm_positions=None)``
    returns ``(mlm_logits, nsp_logits)``; with ``masked_lm_positions`` (B, P) the MLM logits are
    computed only at those positions (B, P, vocab), else at every position (B, S, vocab).
    """

    base_model_prefix = "bert"
    classifier_name = "cls"

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = BertModel(config)
        self.cls = BertPreTrainingHeads(config)

    def construct(self, input_ids, attention_mask=None, token_type_ids=None, masked_lm_positions=None):
        sequence, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        if masked_lm_positions is not None:
            index = masked_lm_positions.astype(ms.int32).expand_dims(-1).broadcast_to(
                masked_lm_positions.shape + (sequence.shape[-1],))
            sequence = ops.gather_elements(sequence, 1, index)
        mlm, nsp = self.cls(sequence, pooled, self.bert.embeddings.word_embeddings.embedding_table)
        return mlm.astype(ms.float32), nsp.astype(ms.float32)


class BertForSequenceClassification(nn.Cell):
    """Pooled [CLS] output -> dropout -> linear classifier: ``(B, num_labels)`` logits."""

    base_model_prefix = "bert"
    classifier_name = "classifier"

    def __init__(self, config: BertConfig, num_labels: int = 2):
        super().__init__()
        self.config = config
        self.num_labels = num_labels
        self.bert = BertModel(config)
        dropout = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = SeededDropout(p=dropout)
        self.classifier = _dense(config.hidden_size, num_labels, config)

    def construct(self, input_ids, attention_mask=None, token_type_ids=None):
        _, pooled = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(pooled)).astype(ms.float32)


class BertForTokenClassification(BertForSequenceClassification):
    """Every token's hidden state -> dropout -> linear classifier: ``(B, S, num_labels)`` logits."""

    def construct(self, input_ids, attention_mask=None, token_type_ids=None):
        sequence, _ = self.bert(input_ids, attention_mask, token_type_ids)
        return self.classifier(self.dropout(sequence)).astype(ms.float32)
