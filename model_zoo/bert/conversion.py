"""Importing BERT weights: a Hugging Face directory (``config.json`` + safetensors or PyTorch weights)
or a MindSpore checkpoint, checked name by name and shape by shape; ``ms-suite convert-weights --from hf``."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from typing import Any, Callable, Dict, Optional, Tuple

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn

from model_zoo.bert.configuration import CONFIG_KEY, CONFIG_NAME, WEIGHT_NAMES, BertConfig, read_json
from ms_suite.checkpoint import model_weights, read_checkpoint
from ms_suite.errors import UserError
from ms_suite.models.registry import create_model
from ms_suite.models.weights import SHOWN, read_torch_state
from ms_suite.registry import CONVERTERS

log = logging.getLogger("ms_suite")

_HF_LEAF_RENAMES = (  # HF leaf -> MindSpore leaf
    (re.compile(r"LayerNorm\.(weight|gamma)$"), "LayerNorm.gamma"),
    (re.compile(r"LayerNorm\.(bias|beta)$"), "LayerNorm.beta"),
    (re.compile(r"_embeddings\.weight$"), "_embeddings.embedding_table"),
)
# Tensors HF saves that are not weights of their own: buffers and the tied decoder.
_IGNORED = re.compile(r"(position_ids|cls\.predictions\.decoder\.weight)$")


def hf_to_ms_name(key: str) -> str:
    """HF parameter name -> this module's name (MindSpore names pass through unchanged)."""
    for pattern, leaf in _HF_LEAF_RENAMES:
        key = pattern.sub(leaf, key)
    return key.replace("cls.predictions.decoder.bias", "cls.predictions.bias")


def read_hf_state(path: str) -> Dict[str, np.ndarray]:
    """The weights of an HF BERT directory (``model.safetensors`` preferred, else ``pytorch_model.bin``)."""

    for name in WEIGHT_NAMES:
        file = os.path.join(path, name)
        if os.path.isfile(file):
            return read_torch_state(file)
    raise UserError(f"{path} has no {' or '.join(WEIGHT_NAMES)}; expected a Hugging Face BERT directory "
                    f"(config.json + weights + vocab.txt)")


def read_source(path: str) -> Tuple[Optional[BertConfig], Dict[str, np.ndarray]]:
    """(config, tensors) from an HF directory or a MindSpore checkpoint (config None unless stored)."""
    if os.path.isdir(path):
        config_file = os.path.join(path, CONFIG_NAME)
        if not os.path.isfile(config_file):
            raise UserError(f"{path} has no {CONFIG_NAME}; expected a Hugging Face BERT directory")
        return BertConfig.from_json_file(config_file), read_hf_state(path)

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
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        raise UserError(f"{source} does not fit this BERT ({net.config.num_hidden_layers} layers, hidden "
                        f"{net.config.hidden_size}, vocab {net.config.vocab_size}): "
                        f"{', '.join(problems[:SHOWN])}{more}; use model.name=bert (shape from config.json) "
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


_ARCHITECTURES = {"BertModel": "bert", "BertForPreTraining": "bert_pretraining", "BertForMaskedLM": "bert_pretraining",
                  "BertForSequenceClassification": "bert_cls", "BertForTokenClassification": "bert_token_cls"}


@CONVERTERS.register("hf")
def convert_hf_bert(src: str, dst: str, arch: Optional[str] = None) -> Dict[str, Any]:
    """Convert an HF BERT directory into a MindSpore checkpoint that remembers its config.

    ``arch`` (a zoo name) defaults to the one matching ``architectures`` in config.json.
    Returns a summary (arch, shape, parameter count).
    """
    if not os.path.isdir(src):
        raise UserError(f"--src {src} is not a folder; expected a Hugging Face BERT directory "
                        "(config.json + model.safetensors or pytorch_model.bin + vocab.txt)")
    raw = read_json(os.path.join(src, CONFIG_NAME))
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
