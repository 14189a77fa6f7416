"""Model registry, timm-style: ``@register_model`` on a builder, ``create_model(name)`` to build.

A builder is a function ``fn(num_classes=..., **kwargs) -> mindspore.nn.Cell`` living in one
family file (or folder) under ``model_zoo/``; :data:`ms_suite.registry.MODELS` finds the families
there on first lookup. Its registration carries a :class:`ModelInfo` describing the default input,
the reference accuracy (with its source) and the weight-conversion family.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from typing import Any, Callable, Dict, List, Optional, Tuple

from ms_suite.errors import UserError
from ms_suite.models.weights import load_pretrained
from ms_suite.registry import MODELS


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the zoo knows about a registered model."""

    name: str
    family: str
    task: str = "image-classification"
    input_size: Tuple[int, ...] = (3, 224, 224)
    num_classes: int = 1000
    reference: str = ""  # e.g. "76.1% top-1 ImageNet (torchvision IMAGENET1K_V1)"
    description: str = ""
    # Optional ``fn(builder, path, **kwargs) -> net`` that builds and loads ``pretrained`` itself
    # (e.g. BERT takes its shape from a Hugging Face directory's config.json).
    from_pretrained: Optional[Callable[..., object]] = None
    # Optional ``fn(net) -> ms_suite.runtime.auto_parallel.ParallelLayout``: how the family is split for
    # tensor/pipeline parallelism (semi-auto/auto parallel); None: data parallel only.
    parallel_layout: Optional[Callable[..., object]] = None


def register_model(family: str, **info) -> Callable[[Callable], Callable]:
    """Register ``fn`` in :data:`ms_suite.registry.MODELS` under its function name, with the given
    :class:`ModelInfo` fields."""

    def wrap(fn: Callable) -> Callable:
        MODELS.add(fn.__name__, fn, ModelInfo(name=fn.__name__, family=family, **info))
        return fn

    return wrap


def list_models() -> List[str]:
    """Names of every registered model, sorted."""
    return MODELS.names()


def model_info(name: str) -> ModelInfo:
    return MODELS.meta(name)


def model_builder(name: str) -> Callable:
    """The registered builder function of ``name``."""
    return MODELS.get(name)


def builder_accepts(name: str, argument: str) -> bool:
    """Whether the builder of ``name`` takes the keyword ``argument``."""
    return argument in inspect.signature(MODELS.get(name)).parameters


def create_model(name: str, num_classes: Optional[int] = None, pretrained: Optional[str] = None,
                 **kwargs):
    """Build a registered model; ``pretrained`` is a checkpoint path (or HF directory for BERT).

    When the checkpoint's classifier shape differs from ``num_classes`` the classifier is
    dropped with a log line and the rest is loaded.
    """
    builder, info = MODELS.get(name), MODELS.meta(name)
    _check_kwargs(name, builder, kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if pretrained and info.from_pretrained is not None:
        return info.from_pretrained(builder, pretrained, **kwargs)
    net = builder(**kwargs)
    if pretrained:
        load_pretrained(net, pretrained, name)
    return net


def model_config(net, name: str, num_classes: int, kwargs: Dict[str, Any],
                 input_shape: Tuple[int, ...]) -> Dict[str, Any]:
    """What rebuilds ``net`` without the recipe, its pretrained weights or its data (as Hugging Face's
    ``config.json`` does): the registered ``name``, ``num_classes``, the builder ``kwargs`` and the
    ``input_shape`` of one sample. A model with a ``config`` dataclass (BERT: layers, widths, vocabulary,
    dropout...) stores every field of it as a keyword, so a pretrained shape needs no ``config.json``."""
    shape = getattr(net, "config", None)
    fields = dataclasses.asdict(shape) if dataclasses.is_dataclass(shape) else {}
    own = {k: v for k, v in kwargs.items() if not fields or k != "config"}  # the fields replace a config path
    return {"name": name, "num_classes": num_classes, "kwargs": {**own, **fields},
            "input_shape": [int(d) for d in input_shape]}


def _check_kwargs(name: str, builder: Callable, kwargs: dict) -> None:
    params = inspect.signature(builder).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for key in kwargs:
        if key not in params:
            close = difflib.get_close_matches(key, list(params), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UserError(f"model {name!r} takes no argument {key!r}{hint} "
                            f"(accepted: {', '.join(sorted(params))})")
