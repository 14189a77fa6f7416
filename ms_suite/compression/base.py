"""What every compression algorithm provides, the registry, and the glue to the suite's trainer."""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Type

from mindspore import nn
from mindspore.train.callback import RunContext as MindSporeRunContext

from ms_suite.config import Config
from ms_suite.data import DatasetInfo
from ms_suite.deploy import export_verified
from ms_suite.engine.callbacks import Callback, RunContext, TrainState
from ms_suite.engine.tasks import Task
from ms_suite.engine.trainer import LossHook, ModelHook, Trainer
from ms_suite.errors import UserError
from ms_suite.models import model_info
from ms_suite.registry import COMPRESSION


@dataclasses.dataclass
class TrainContext:
    """What an algorithm needs to train: the recipe, where to write, the device, the data, the task and
    extra callbacks for every training stage (besides the recipe's own)."""

    cfg: Config
    output_dir: str
    device: str
    data_info: DatasetInfo
    task: Task
    callbacks: Sequence[Callback] = ()

    def fit(self, cfg: Optional[Config] = None, output_dir: Optional[str] = None,
            callbacks: Sequence[Callback] = (), model_hook: Optional[ModelHook] = None,
            loss_hook: Optional[LossHook] = None) -> nn.Cell:
        """Train with the suite's trainer (one stage); returns the trained network."""
        trainer = Trainer(cfg or self.cfg, output_dir or self.output_dir, callbacks=[*callbacks, *self.callbacks],
                          model_hook=model_hook, loss_hook=loss_hook)
        trainer.fit()
        return trainer.net


class Algorithm:
    """One compression recipe. Subclasses override what differs; the pipeline calls, in order:
    ``check`` (before any work), ``reference`` (the float model to compare against), ``train``,
    ``convert`` (the inference form to export) and ``layers`` (per-layer report rows)."""

    name = ""
    families: Optional[Sequence[str]] = None  # model families the algorithm knows how to rewrite
    needs_pretrained = True  # compresses the recipe's trained model (the distillation student starts fresh)
    notes: Tuple[str, ...] = ()  # sentences the report carries

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.settings = getattr(cfg.compression, self.name)

    def check(self, device: str) -> None:
        """Refuse unsupported devices, models and settings with one clear line (UserError)."""
        family = model_info(self.cfg.model.name).family
        if self.families is not None and family not in self.families:
            raise UserError(f"compression.algorithm={self.name} supports {', '.join(self.families)} models; "
                            f"model.name={self.cfg.model.name} is a {family} model")
        if self.needs_pretrained and not self.cfg.model.pretrained:
            raise UserError(f"compression.algorithm={self.name} compresses a trained float model: "
                            "pass --pretrained CKPT (or set model.pretrained)")

    def reference(self, ctx: TrainContext) -> nn.Cell:
        """The trained float model the compressed one is compared with (the recipe's model)."""
        net, _ = ctx.task.build_model(self.cfg, ctx.data_info)
        return net

    def train(self, ctx: TrainContext) -> nn.Cell:
        """Apply the algorithm, fine-tune, and return the network in its evaluable form."""
        raise NotImplementedError

    def convert(self, net: nn.Cell) -> nn.Cell:
        """The inference form to export (default: the trained network itself)."""
        return net

    def layers(self, before: nn.Cell, after: nn.Cell) -> List[Dict[str, object]]:
        """Per-layer rows for the report (bit-widths or kept channels)."""
        return []

    def deploy(self, ctx: TrainContext, net: nn.Cell, inputs: Sequence, path: str, samples, source: dict):
        """Write the ONNX file a CPU user deploys (default: the float network), verified against
        ``net`` on ``samples``; returns a :class:`ms_suite.deploy.Deployed`, or None when the
        algorithm's result has no ONNX form (the report's notes say why)."""
        return export_verified(net, ctx.task.name, inputs, path, "ONNX", samples, source)


def register(cls: Type[Algorithm]) -> Type[Algorithm]:
    """Register an :class:`Algorithm` subclass in :data:`ms_suite.registry.COMPRESSION` under its ``name``."""
    COMPRESSION.add(cls.name, cls)
    return cls


def build_algorithm(cfg: Config) -> Algorithm:
    name = cfg.compression.algorithm
    if name is None:
        raise UserError(f"the recipe sets no compression.algorithm; choose one of {', '.join(COMPRESSION.names())} "
                        "(e.g. --set compression.algorithm=simqat)")
    return COMPRESSION.get(name)(cfg)


class _CallbackParams(dict):
    """``RunContext.original_args()``: a dict read through attributes, as MindSpore's own."""

    __getattr__ = dict.__getitem__


class GoldenStickCallbacks(Callback):
    """Drive Golden Stick's MindSpore callbacks (``epoch_begin``/``epoch_end``) from the suite's
    trainer. ``make(context)`` builds them once the trainer has built (and compressed) the network.
    Epoch numbers are 1-based, as in ``mindspore.train.Model``."""

    def __init__(self, make: Callable[[RunContext], list]):
        self.make = make
        self.callbacks: list = []

    def on_train_begin(self, state: TrainState) -> None:
        self.callbacks = self.make(state.context)
        self._call("epoch_begin", state, state.epoch + 1)

    def on_epoch_end(self, state: TrainState) -> None:
        self._call("epoch_end", state, state.epoch)  # the trainer has already counted the epoch
        if state.epoch < state.epochs:
            self._call("epoch_begin", state, state.epoch + 1)

    def _call(self, hook: str, state: TrainState, epoch: int) -> None:
        params = _CallbackParams(cur_epoch_num=epoch, epoch_num=state.epochs, cur_step_num=state.step,
                                 network=state.context.net, train_network=state.context.train_step)
        for callback in self.callbacks:
            getattr(callback, hook)(MindSporeRunContext(params))
