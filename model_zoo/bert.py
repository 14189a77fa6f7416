"""BERT in MindSpore with Hugging Face transformers' layout, parameter names and initialisation.

Read top to bottom: :class:`BertConfig` (the fields of an HF ``config.json``), the encoder cells,
the task heads (:class:`BertForPreTraining`, :class:`BertForSequenceClassification`,
:class:`BertForTokenClassification`), weight import from an HF directory or a MindSpore
checkpoint, tensor-parallel strategies, and the registered zoo names.

Parameter names follow HF's (``encoder.layer.0.attention.self.query.weight``); MindSpore's cells
name LayerNorm ``weight``/``bias`` as ``gamma``/``beta`` and an embedding's ``weight`` as
``embedding_table``, so importing is a rename (:func:`hf_to_ms_name`). The MLM decoder reuses the
word embeddings (tied), as in HF.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore.common.initializer import Normal

from ms_suite.errors import UserError
from ms_suite.models.dropout import SeededDropout
from ms_suite.models.registry import register_model

log = logging.getLogger("ms_suite")

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
CONFIG_KEY = "bert_config"  # JSON BertConfig stored inside converted checkpoints
_ACTIVATIONS: Dict[str, Callable[[], nn.Cell]] = {
    "gelu": lambda: nn.GELU(approximate=False),
    "gelu_new": lambda: nn.GELU(approximate=True),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate=True),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass
class BertConfig:
    """The shape and regularisation of a BERT; field names and defaults are HF's (BERT-Base)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    classifier_dropout: Optional[float] = None

    def __post_init__(self) -> None:
        if self.hidden_act not in _ACTIVATIONS:
            raise UserError(f"BERT hidden_act {self.hidden_act!r} is not supported; "
                            f"use one of {', '.join(_ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"BERT hidden_size {self.hidden_size} is not divisible by "
                            f"num_attention_heads {self.num_attention_heads}")

    @classmethod
    def from_dict(cls, data: Dict[str, Any], source: str = "config") -> "BertConfig":
        """Build from an HF config dict; keys BERT does not use (architectures, dtype...) are ignored."""
        model_type = data.get("model_type", "bert")
        if model_type != "bert":
            raise UserError(f"{source}: model_type {model_type!r} is not BERT; only BERT checkpoints import")
        position = data.get("position_embedding_type", "absolute")
        if position != "absolute":
            raise UserError(f"{source}: position_embedding_type {position!r} is not supported (absolute only)")
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @classmethod
    def from_json_file(cls, path: str) -> "BertConfig":
        return cls.from_dict(_read_json(path), path)

    def to_dict(self) -> Dict[str, Any]:
        return {"model_type": "bert", **dataclasses.asdict(self)}


def _read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read BERT config {path}: {exc}") from None


# Google's released shapes (BERT README and "Well-Read Students Learn Better"); FFN = 4 x hidden.
SIZES: Dict[str, Tuple[int, int, int]] = {  # name: (layers, hidden, heads)
    "tiny": (2, 128, 2), "mini": (4, 256, 4), "small": (4, 512, 8),
    "medium": (8, 512, 8), "base": (12, 768, 12), "large": (24, 1024, 16),
}


def size_config(size: str, **overrides: Any) -> BertConfig:
    """The published configuration of ``size`` (tiny ... large), with field overrides."""
    layers, hidden, heads = SIZES[size]
    fields = dict(num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads,
                  intermediate_size=4 * hidden)
    return _with_overrides(BertConfig(**fields), overrides)


def _with_overrides(config: BertConfig, overrides: Dict[str, Any]) -> BertConfig:
    names = {f.name for f in dataclasses.fields(BertConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"BERT takes no argument {unknown[0]!r} (config fields: {', '.join(sorted(names))})")
    return dataclasses.replace(config, **overrides)


# --------------------------------------------------------------------------- encoder


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
        self.intermediate_act_fn = _ACTIVATIONS[config.hidden_act]()

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
        self.transform_act_fn = _ACTIVATIONS[config.hidden_act]()
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

    def construct(self, hidden_states, embedding_table):
        hidden = self.transform(hidden_states)
        flat = hidden.reshape(-1, hidden.shape[-1])
        logits = self.decoder_matmul(flat, embedding_table.astype(flat.dtype)) + self.bias.astype(flat.dtype)
        return logits.reshape(hidden.shape[:-1] + (-1,))


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


# --------------------------------------------------------------------------- tensor and pipeline parallel


def shard_bert(model: BertModel, dp: int, mp: int) -> None:
    """Megatron-style strategies: column-parallel Q/K/V and FFN-up, row-parallel output projections,
    attention split by heads; everything else data parallel. Only read in semi-auto parallel mode."""
    for layer in model.encoder.layer:
        attention = layer.attention.self
        for column in (attention.query, attention.key, attention.value, layer.intermediate.dense):
            column.matmul.shard(((dp, 1), (mp, 1)))
            column.bias_add.shard(((dp, mp), (mp,)))
        for row in (layer.attention.output.dense, layer.output.dense):
            row.matmul.shard(((dp, mp), (1, mp)))
            row.bias_add.shard(((dp, 1), (1,)))
        attention.scores_matmul.shard(((dp, mp, 1, 1), (dp, mp, 1, 1)))
        attention.softmax.shard(((dp, mp, 1, 1),))
        attention.context_matmul.shard(((dp, mp, 1, 1), (dp, mp, 1, 1)))
    embeddings = model.embeddings  # nn.Embedding gathers with flattened ids; positions are one row
    for table in (embeddings.word_embeddings, embeddings.token_type_embeddings):
        table.gather.shard(((1, 1), (dp,)))
    embeddings.position_embeddings.gather.shard(((1, 1), (1,)))


def backbone(net: nn.Cell) -> BertModel:
    """The BertModel inside ``net`` (or ``net`` itself)."""
    return net if isinstance(net, BertModel) else net.bert


def pipeline_parts(net: nn.Cell) -> Tuple[List[nn.Cell], List[nn.Cell], List[nn.Cell]]:
    """(cells before the encoder layers, the layers, cells after them) for pipeline stages."""
    model = backbone(net)
    heads = [cell for name, cell in net.name_cells().items() if name != "bert"] if net is not model else []
    return [model.embeddings], list(model.encoder.layer), [model.pooler, *heads]


# --------------------------------------------------------------------------- weight import


_HF_LEAF_RENAMES = (  # HF leaf -> MindSpore leaf
    (re.compile(r"LayerNorm\.(weight|gamma)$"), "LayerNorm.gamma"),
    (re.compile(r"LayerNorm\.(bias|beta)$"), "LayerNorm.beta"),
    (re.compile(r"_embeddings\.weight$"), "_embeddings.embedding_table"),
)
# Tensors HF saves that are not weights of their own: buffers and the tied decoder.
_IGNORED = re.compile(r"(position_ids|cls\.predictions\.decoder\.weight)$")
_SHOWN = 5


def hf_to_ms_name(key: str) -> str:
    """HF parameter name -> this module's name (MindSpore names pass through unchanged)."""
    for pattern, leaf in _HF_LEAF_RENAMES:
        key = pattern.sub(leaf, key)
    return key.replace("cls.predictions.decoder.bias", "cls.predictions.bias")


def read_hf_state(path: str) -> Dict[str, np.ndarray]:
    """The weights of an HF BERT directory (``model.safetensors`` preferred, else ``pytorch_model.bin``)."""
    from ms_suite.models.weights import _read_torch_state

    for name in WEIGHT_NAMES:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            return _read_torch_state(file)
    raise UserError(f"{path} has no {' or '.join(WEIGHT_NAMES)}; expected a Hugging Face BERT directory "
                    f"(config.json + weights + vocab.txt)")


def read_source(path: str) -> Tuple[Optional[BertConfig], Dict[str, np.ndarray]]:
    """(config, tensors) from an HF directory or a MindSpore checkpoint (config None unless stored)."""
    if os.path.isdir(path):
        config_file = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(config_file):
            raise UserError(f"{path} has no {CONFIG_NAME}; expected a Hugging Face BERT directory")
        return BertConfig.from_json_file(config_file), read_hf_state(path)
    from ms_suite.models.weights import model_weights, read_checkpoint

    params, _ = read_checkpoint(path)
    config_text = params.pop(CONFIG_KEY, None)
    config = BertConfig.from_dict(json.loads(config_text), path) if isinstance(config_text, str) else None
    return config, {name: value.asnumpy() for name, value in model_weights(params).items()
                    if isinstance(value, (Tensor, Parameter))}


def _canonical(tensors: Dict[str, np.ndarray]) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
    """Split into (backbone tensors without any ``bert.`` prefix, head tensors)."""
    body, heads = {}, {}
    for key, value in tensors.items():
        if _IGNORED.search(key):
            continue
        name = hf_to_ms_name(key)
        if name.startswith("bert."):
            body[name[len("bert."):]] = value
        elif name.split(".", 1)[0] in ("embeddings", "encoder", "pooler"):
            body[name] = value
        else:
            heads[name] = value
    return body, heads


def load_bert_weights(net: nn.Cell, tensors: Dict[str, np.ndarray], source: str) -> None:
    """Load HF- or MindSpore-named ``tensors`` into a BERT model or head model.

    The backbone must be complete and shaped alike (a missing pooler is re-initialised, as HF
    does); a task head that is missing or shaped differently keeps its fresh initialisation.
    """
    body, heads = _canonical(tensors)
    prefix = f"{net.base_model_prefix}." if net.base_model_prefix else ""
    own = net.parameters_dict()
    head_prefix = getattr(net, "classifier_name", None)
    loaded, fresh, problems = {}, [], []
    for name, param in own.items():
        is_head = bool(head_prefix) and name.startswith(head_prefix + ".")
        value = heads.get(name) if is_head else body.get(name[len(prefix):])
        if value is not None and tuple(value.shape) == tuple(param.shape):
            loaded[name] = Parameter(Tensor(value.astype(np.float32)), name=name)
        elif is_head or (value is None and ".pooler." in f".{name}"):
            fresh.append(name)
        else:
            problems.append(_mismatch(name, value, param))
    if problems:
        more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise UserError(f"{source} does not fit this BERT ({net.config.num_hidden_layers} layers, hidden "
                        f"{net.config.hidden_size}, vocab {net.config.vocab_size}): "
                        f"{', '.join(problems[:_SHOWN])}{more}; use model.name=bert (shape from config.json) "
                        f"or the matching bert_<size>")
    if fresh:
        log.warning("%d tensor(s) of %s not in %s (e.g. %s); they keep their fresh initialisation",
                    len(fresh), type(net).__name__, source, fresh[0])
    ms.load_param_into_net(net, loaded, strict_load=False)


def _mismatch(name: str, value: Optional[np.ndarray], param: Parameter) -> str:
    if value is None:
        return f"{name} missing"
    if name.endswith("word_embeddings.embedding_table"):
        return f"vocab size {value.shape[0]} in the checkpoint vs {param.shape[0]} in the model"
    return f"{name} checkpoint {tuple(value.shape)} vs model {tuple(param.shape)}"


_SHAPE_KEYS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size",
               "max_position_embeddings", "type_vocab_size")


def check_config_match(config: BertConfig, wanted: BertConfig, source: str) -> None:
    """A sized model (bert_base...) must have the shape of the checkpoint it loads."""
    diffs = [f"{k} {getattr(wanted, k)} (model {getattr(config, k)})" for k in _SHAPE_KEYS
             if getattr(config, k) != getattr(wanted, k)]
    if diffs:
        raise UserError(f"{source} has {', '.join(diffs)}; use model.name=bert (or bert_cls, bert_pretraining, "
                        f"bert_token_cls) to take the shape from the checkpoint")


def from_pretrained(builder: Callable[..., nn.Cell], path: str, **kwargs: Any) -> nn.Cell:
    """Build with ``builder`` and load ``path``: an HF BERT directory or a MindSpore checkpoint.

    Generic builders (``bert``, ``bert_cls``...) take their shape from the directory's
    ``config.json`` (or the config stored in a converted checkpoint); sized builders check the
    shape and take the rest (activation, LayerNorm epsilon, dropout) from it.
    """
    config, tensors = read_source(path)
    generic = getattr(builder, "generic", False)
    if generic and config is not None:
        kwargs.setdefault("config", config)
    elif config is not None:
        for key, value in dataclasses.asdict(config).items():
            if key not in _SHAPE_KEYS:
                kwargs.setdefault(key, value)
    net = builder(**kwargs)
    if config is not None and not generic:
        check_config_match(net.config, config, path)
    load_bert_weights(net, tensors, path)
    return net


def save_converted(net: nn.Cell, dst: str) -> None:
    """Write ``net`` as a MindSpore checkpoint that also records its BertConfig."""
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    ms.save_checkpoint(net, dst, append_dict={CONFIG_KEY: json.dumps(net.config.to_dict())})


# --------------------------------------------------------------------------- FLOPs


def _attention_flops(cell: BertSelfAttention, inputs: tuple, output: ms.Tensor) -> int:
    """QK^T and probs @ V (the Dense projections are counted on their own)."""
    batch, seq, hidden = output.shape
    return 2 * 2 * batch * seq * seq * hidden


def _mlm_decoder_flops(cell: BertLMPredictionHead, inputs: tuple, output: ms.Tensor) -> int:
    """The tied decoder matmul (the transform's Dense is counted on its own)."""
    rows = output.size // output.shape[-1]
    return 2 * rows * inputs[1].shape[1] * output.shape[-1]


def _register_flop_counters() -> None:
    from ms_suite.models.flops import FLOP_COUNTERS

    FLOP_COUNTERS[BertSelfAttention] = _attention_flops
    FLOP_COUNTERS[BertLMPredictionHead] = _mlm_decoder_flops


_register_flop_counters()


# --------------------------------------------------------------------------- zoo registration

_HEADS = {  # suffix: (class, task, default classes, registered per size)
    "": (BertModel, "feature-extraction", 0, True),
    "_pretraining": (BertForPreTraining, "bert-pretraining", 2, True),
    "_cls": (BertForSequenceClassification, "text-classification", 2, True),
    "_token_cls": (BertForTokenClassification, "token-classification", 2, False),  # shape via config/kwargs
}
_GLUE = " GLUE test score (google-research/bert README)"
_REFERENCES = {"tiny": "64.2" + _GLUE, "mini": "65.8" + _GLUE, "small": "71.2" + _GLUE,
               "medium": "73.5" + _GLUE, "base": "79.6 GLUE test average (BERT paper, Table 1)",
               "large": "82.1 GLUE test average (BERT paper, Table 1)"}
DEFAULT_SEQ_LEN = 128


def _build(cls: type, config: BertConfig, num_classes: int) -> nn.Cell:
    return cls(config) if cls in (BertModel, BertForPreTraining) else cls(config, num_classes)


def _sized_builder(name: str, size: str, cls: type, default_classes: int) -> Callable[..., nn.Cell]:
    def builder(num_classes: int = default_classes, **overrides: Any) -> nn.Cell:
        return _build(cls, size_config(size, **overrides), num_classes)

    builder.__name__ = name
    builder.__doc__ = f"{cls.__name__}, BERT-{size.capitalize()} shape {SIZES[size]} (layers, hidden, heads)."
    return builder


def _generic_builder(name: str, cls: type, default_classes: int) -> Callable[..., nn.Cell]:
    def builder(config: Union[None, str, Dict[str, Any], BertConfig] = None, num_classes: int = default_classes,
                **overrides: Any) -> nn.Cell:
        if isinstance(config, str):
            path = os.path.join(config, CONFIG_NAME) if os.path.isdir(config) else config
            config = BertConfig.from_json_file(path)
        elif isinstance(config, dict):
            config = BertConfig.from_dict(config)
        return _build(cls, _with_overrides(config or BertConfig(), overrides), num_classes)

    builder.__name__ = name
    builder.__doc__ = f"{cls.__name__} shaped by ``config`` (HF config.json path or dict; default BERT-Base)."
    builder.generic = True
    return builder


def _register_all() -> None:
    common = dict(input_size=(DEFAULT_SEQ_LEN,), from_pretrained=from_pretrained)
    for suffix, (cls, task, classes, sized) in _HEADS.items():
        name = f"bert{suffix}"
        register_model("bert", task=task, num_classes=classes, description=f"{cls.__name__} from config.json",
                       **common)(_generic_builder(name, cls, classes))
        for size in SIZES if sized else ():
            name = f"bert_{size}{suffix}"
            reference = _REFERENCES[size] if suffix == "_cls" else ""
            register_model("bert", task=task, num_classes=classes, reference=reference,
                           description=f"{cls.__name__}, BERT-{size}", **common)(
                _sized_builder(name, size, cls, classes))


_register_all()


# --------------------------------------------------------------------------- conversion

_ARCHITECTURES = {"BertModel": "bert", "BertForPreTraining": "bert_pretraining", "BertForMaskedLM": "bert_pretraining",
                  "BertForSequenceClassification": "bert_cls", "BertForTokenClassification": "bert_token_cls"}


def convert_hf_bert(src: str, dst: str, arch: Optional[str] = None) -> Dict[str, Any]:
    """Convert an HF BERT directory into a MindSpore checkpoint that remembers its config.

    ``arch`` (a zoo name) defaults to the one matching ``architectures`` in config.json.
    Returns a summary (arch, shape, parameter count).
    """
    from ms_suite.models.registry import create_model

    if not os.path.isdir(src):
        raise UserError(f"--src {src} is not a folder; expected a Hugging Face BERT directory "
                        "(config.json + model.safetensors or pytorch_model.bin + vocab.txt)")
    raw = _read_json(os.path.join(src, CONFIG_NAME))
    kwargs: Dict[str, Any] = {}
    if arch is None:
        architecture = (raw.get("architectures") or ["BertModel"])[0]
        arch = _ARCHITECTURES.get(architecture, "bert")
    if arch.endswith("cls") and raw.get("id2label"):
        kwargs["num_classes"] = len(raw["id2label"])
    net = create_model(arch, pretrained=src, **kwargs)
    save_converted(net, dst)
    config = net.config
    return {"arch": arch, "layers": config.num_hidden_layers, "hidden": config.hidden_size,
            "heads": config.num_attention_heads, "vocab_size": config.vocab_size,
            "num_params": int(sum(p.size for p in net.trainable_params()))}
