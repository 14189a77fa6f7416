"""Models: the registry (``create_model``/``list_models``), weight import and FLOPs counting."""
from __future__ import annotations

from typing import Tuple

from ms_suite.models.registry import ModelInfo, builder_accepts, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "build_model", "create_model", "list_models", "model_info", "register_model"]


def build_model(cfg, data_info) -> Tuple[object, int]:
    """Build ``cfg`` (a ModelConfig) for a dataset: classes from the dataset unless set, and
    ``in_chans`` from the dataset's images when the builder takes it and the recipe does not."""
    num_classes = cfg.num_classes or data_info.num_classes
    kwargs = dict(cfg.kwargs)
    if builder_accepts(cfg.name, "in_chans"):
        kwargs.setdefault("in_chans", data_info.input_shape[0])
    net = create_model(cfg.name, num_classes=num_classes, pretrained=cfg.pretrained, **kwargs)
    return net, num_classes
