"""BERT, laid out as Hugging Face transformers lays out a model: :mod:`.configuration` (``BertConfig``,
sizes), :mod:`.modeling` (encoder and task heads), :mod:`.conversion` (HF weight import) and
:mod:`.parallel` (tensor/pipeline layout). Importing the package registers the zoo names: ``bert``,
``bert_pretraining``, ``bert_cls``, ``bert_token_cls`` (shape from a config) and ``bert_<size>[_head]``
for Google's published sizes.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Union

from mindspore import nn

from model_zoo.bert.configuration import CONFIG_NAME, SIZES, BertConfig, size_config, with_overrides
from model_zoo.bert.conversion import convert_hf_bert, from_pretrained, load_bert_weights
from model_zoo.bert.modeling import (BertForPreTraining, BertForSequenceClassification, BertForTokenClassification,
                                     BertModel)
from model_zoo.bert.parallel import backbone, parallel_layout, pipeline_parts, shard_bert
from ms_suite.models.registry import register_model

__all__ = ["BertConfig", "BertForPreTraining", "BertForSequenceClassification", "BertForTokenClassification",
           "BertModel", "SIZES", "backbone", "convert_hf_bert", "from_pretrained", "load_bert_weights",
           "pipeline_parts", "shard_bert", "size_config"]

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
        return _build(cls, with_overrides(config or BertConfig(), overrides), num_classes)

    builder.__name__ = name
    builder.__doc__ = f"{cls.__name__} shaped by ``config`` (HF config.json path or dict; default BERT-Base)."
    builder.generic = True
    return builder


def _register_all() -> None:
    common = dict(input_size=(DEFAULT_SEQ_LEN,), from_pretrained=from_pretrained, parallel_layout=parallel_layout)
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
