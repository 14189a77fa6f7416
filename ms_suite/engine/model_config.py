"""The model configuration a training checkpoint carries, and rebuilding its network from it.

Every checkpoint the trainer writes stores, under ``model_config`` in its metadata, what
:func:`ms_suite.models.registry.model_config` records (model name, classes, builder keywords with
the full BERT shape, one sample's input shape). ``eval``, ``export`` and ``--resume`` build the
network from it, so they need neither the recipe's data nor its ``model.pretrained`` folder.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

from mindspore import nn

from ms_suite.config import Config
from ms_suite.data import DatasetInfo, dataset_info
from ms_suite.engine.tasks import Task, get_task
from ms_suite.errors import UserError
from ms_suite.models import model_info
from ms_suite.checkpoint import read_checkpoint_meta
from ms_suite.models.weights import load_weights

log = logging.getLogger("ms_suite")

META_FIELD = "model_config"  # key in a checkpoint's metadata


def saved_model_config(path: str) -> Optional[Dict[str, Any]]:
    """The model configuration stored in checkpoint ``path``, or None (older or foreign checkpoints)."""
    return read_checkpoint_meta(path).get(META_FIELD)


def adopt_model_config(cfg: Config, saved: Dict[str, Any], source: str) -> None:
    """Make ``cfg.model`` build the network ``saved`` describes (its weights come from ``source``)."""
    ignored = _recipe_differences(cfg, saved)
    if ignored:
        log.warning("building the model stored in %s; the recipe's %s differ and are ignored",
                    source, ", ".join(ignored))
    cfg.model.name, cfg.model.num_classes = saved["name"], saved["num_classes"]
    cfg.model.kwargs, cfg.model.pretrained = dict(saved["kwargs"]), None


def _recipe_differences(cfg: Config, saved: Dict[str, Any]) -> List[str]:
    """``key=recipe value (checkpoint: value)`` for the model keys the recipe sets otherwise."""
    pairs = [("model.name", cfg.model.name, saved["name"]),
             ("model.num_classes", cfg.model.num_classes, saved["num_classes"])]
    pairs += [(f"model.kwargs.{k}", v, saved["kwargs"].get(k)) for k, v in cfg.model.kwargs.items()]
    return [f"{key}={mine} (checkpoint: {theirs})" for key, mine, theirs in pairs
            if mine is not None and mine != theirs]


def build_model_from_checkpoint(cfg: Config, path: str, params: Dict[str, Any],
                                meta: Dict[str, Any]) -> Tuple[Task, nn.Cell, DatasetInfo]:
    """(task, network in eval mode with the weights of ``path``, shape facts) for eval and export;
    ``params``, ``meta``: the checkpoint as :func:`ms_suite.models.weights.read_checkpoint` read it.

    The network is the one ``path`` was trained with; a checkpoint without a stored model
    configuration falls back to the recipe, sized by its dataset when present, else by
    ``data.image_size`` and ``model.num_classes``/``data.num_classes``."""
    saved = meta.get(META_FIELD)
    if saved is not None:
        adopt_model_config(cfg, saved, path)
        info = DatasetInfo(num_classes=saved["num_classes"], input_shape=tuple(saved["input_shape"]),
                           num_samples={"train": 0, "eval": 0})
    else:
        cfg.model.pretrained = None  # the weights come from ``path``
        info = _recipe_info(cfg)
    task = get_task(model_info(cfg.model.name).task)
    net, _ = task.build_model(cfg, info)
    load_weights(net, params, path, allow_new_head=False)
    net.set_train(False)
    return task, net, info


def _recipe_info(cfg: Config) -> DatasetInfo:
    """The dataset's shape facts; without the dataset files, data.image_size and the class count."""
    try:
        return dataset_info(cfg.data)
    except UserError:
        shape = model_info(cfg.model.name).input_size
        size = cfg.data.image_size
        return DatasetInfo(num_classes=cfg.model.num_classes or cfg.data.num_classes,
                           input_shape=(shape[0], size, size), num_samples={"train": 0, "eval": 0})
