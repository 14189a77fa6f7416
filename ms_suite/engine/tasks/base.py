"""Tasks: how a model family is trained and judged (loss cell, eval metrics, the metric that picks
best.ckpt, FLOPs per sample, example inputs).

A registered model names its task in ``ModelInfo.task``; the trainer, ``eval`` and ``export``
ask the task rather than assuming images and labels. Each task is one file in this package,
registered with ``@register_task(name)`` in :data:`ms_suite.registry.TASKS`.
"""
from __future__ import annotations

from typing import Callable, Dict, Tuple

from mindspore import Tensor, nn

from ms_suite.config import Config
from ms_suite.engine.evaluate import Outputs
from ms_suite.models import build_model
from ms_suite.models.flops import count_flops
from ms_suite.registry import TASKS


def register_task(name: str) -> Callable[[type], type]:
    """Register a :class:`Task` subclass under ``name`` (what ``ModelInfo.task`` refers to)."""

    def wrap(cls: type) -> type:
        if not cls.monitor:
            raise TypeError(f"task {name!r} ({cls.__name__}) must declare its monitor metric")
        cls.name = name
        TASKS.add(name, cls)
        return cls

    return wrap


def get_task(name: str) -> "Task":
    return TASKS.get(name)()


class Task:
    """Override what differs. ``batch`` is the tuple of dataset columns for one step."""

    name = ""
    monitor = ""  # the metric that picks best.ckpt unless checkpoint.monitor says otherwise; higher is better
    has_classes = True  # the model predicts classes (the start-of-run line names their number)

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

    def flops_per_sample(self, net: nn.Cell, cfg: Config, data_info) -> int:
        """Training FLOPs of one sample (for MFU): forward + backward, counted as 3 x the forward
        pass on one input of the data's shape. Override when the model takes other inputs."""
        return 3 * count_flops(net, tuple(data_info.input_shape))
