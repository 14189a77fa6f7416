"""BERT configuration: the fields of a Hugging Face ``config.json`` and Google's published sizes."""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, Optional, Tuple

from mindspore import nn

from ms_suite.errors import UserError

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
CONFIG_KEY = "bert_config"  # JSON BertConfig stored inside converted checkpoints
ACTIVATIONS: Dict[str, Callable[[], nn.Cell]] = {
    "gelu": lambda: nn.GELU(approximate=False),
    "gelu_new": lambda: nn.GELU(approximate=True),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate=True),
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "tanh": nn.Tanh,
}


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
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(f"BERT hidden_act {self.hidden_act!r} is not supported; "
                            f"use one of {', '.join(ACTIVATIONS)}")
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
        return cls.from_dict(read_json(path), path)

    def to_dict(self) -> Dict[str, Any]:
        return {"model_type": "bert", **dataclasses.asdict(self)}


def read_json(path: str) -> Dict[str, Any]:
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
    return with_overrides(BertConfig(**fields), overrides)


def with_overrides(config: BertConfig, overrides: Dict[str, Any]) -> BertConfig:
    names = {f.name for f in dataclasses.fields(BertConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"BERT takes no argument {unknown[0]!r} (config fields: {', '.join(sorted(names))})")
    return dataclasses.replace(config, **overrides)
