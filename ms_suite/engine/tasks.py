"""Tasks: how a model family is trained and judged (loss cell, eval metrics, example inputs).

A registered model names its task in ``ModelInfo.task``; the trainer, ``eval`` and ``export``
ask the task rather than assuming images and labels. Image classification is built in; other
families register theirs with ``@register_task``.
"""
from __future__ import annotations

import importlib
from typing import Callable, Dict, Tuple

import numpy as np
from mindspore import Tensor, nn

from ms_suite.config import Config
from ms_suite.engine.evaluate import Outputs, classification_metrics, predict
from ms_suite.engine.loss import CrossEntropy, NetWithLoss
from ms_suite.errors import UserError
from ms_suite.models import build_model

_TASKS: Dict[str, type] = {}
# Modules that register further tasks when imported (kept lazy: importing them is not free).
TASK_MODULES: Tuple[str, ...] = ("ms_suite.engine.bert_tasks",)


def register_task(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        _TASKS[name] = cls
        cls.name = name
        return cls

    return wrap


def get_task(name: str) -> "Task":
    if name not in _TASKS:
        for module in TASK_MODULES:
            importlib.import_module(module)
    if name not in _TASKS:
        raise UserError(f"no trainer task {name!r} (known: {', '.join(sorted(_TASKS))})")
    return _TASKS[name]()


class Task:
    """Override what differs. ``batch`` is the tuple of dataset columns for one step."""

    name = ""
    monitor = "top1"  # default metric for best.ckpt; higher is better

    def build_model(self, cfg: Config, data_info) -> Tuple[nn.Cell, int]:
        return build_model(cfg.model, data_info)

    def loss_cell(self, net: nn.Cell, cfg: Config, num_classes: int) -> nn.Cell:
        raise NotImplementedError

    def predict(self, net: nn.Cell, dataset, batch_size: int) -> Outputs:
        """Per-sample outputs of ``net`` over ``dataset``: arrays indexed by sample, in dataset order."""
        raise NotImplementedError

    def metrics(self, outputs: Outputs) -> Dict[str, float]:
        """The metrics of the samples in ``outputs`` ({} when there are none)."""
        raise NotImplementedError

    def evaluate(self, net: nn.Cell, dataset, batch_size: int) -> Dict[str, float]:
        return self.metrics(self.predict(net, dataset, batch_size))

    def example_inputs(self, cfg: Config, data_info, batch_size: int) -> Tuple[Tensor, ...]:
        raise NotImplementedError


@register_task("image-classification")
class ImageClassification(Task):
    """Images and int (or mixed one-hot) labels; cross-entropy; top-1/top-5 accuracy."""

    def loss_cell(self, net, cfg, num_classes):
        soft = cfg.data.mixup > 0 or cfg.data.cutmix > 0
        return NetWithLoss(net, CrossEntropy(num_classes, cfg.train.label_smoothing, soft_labels=soft))

    def predict(self, net, dataset, batch_size):
        return predict(net, dataset, batch_size)

    def metrics(self, outputs):
        return classification_metrics(outputs)

    def example_inputs(self, cfg, data_info, batch_size):
        return (Tensor(np.zeros((batch_size,) + tuple(data_info.input_shape), np.float32)),)
