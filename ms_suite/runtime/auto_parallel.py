"""Model and pipeline parallelism for transformer recipes, on MindSpore's (semi-)auto parallel.

A recipe's ``parallel:`` section maps onto MindSpore as follows:

* ``mode: semi_auto_parallel`` (or ``auto_parallel``) -> ``set_auto_parallel_context(parallel_mode=...)``
  after ``init()``; ``device_num`` is the launched world size and must equal
  ``data_parallel x model_parallel x pipeline_stage``. Every rank reads the same global batch
  (``dataset_strategy="full_batch"``) and MindSpore slices it by the layout; each rank saves its
  sharding strategy to ``<run>/strategy/rank_<r>.ckpt`` for merging its checkpoint slices later.
* ``data_parallel`` / ``model_parallel`` -> ``shard()`` strategies the model sets on its matmuls
  (BERT: column-parallel Q/K/V and FFN-up, row-parallel output projections, attention split by heads).
* ``pipeline_stage`` -> ``pipeline_stages`` in the context, each cell's ``pipeline_stage``
  (embeddings first, encoder layers split evenly, heads last) and ``micro_batch_num`` micro-batches
  through ``mindspore.parallel.nn.Pipeline`` around the loss.
* ``optimizer_shard`` -> ``enable_parallel_optimizer``; ``recompute`` -> ``cell.recompute()`` per layer.

MindSpore refuses semi-auto and auto parallel on CPU, so model or pipeline parallel on CPU is a
:class:`UserError` before any communication is initialised. The checks are plain functions so
they are tested without devices. ``recompute`` also applies to standalone and data-parallel runs.
The trainer's side (gradient reduction, per-rank checkpoints, no in-run evaluation) is in
``ms_suite.engine.trainer`` and ``ms_suite.engine.train_step``.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Dict, List, Optional, Sequence

from ms_suite.config.schema import ParallelConfig, TrainConfig
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")

AUTO_MODES = ("semi_auto_parallel", "auto_parallel")


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """What the layout checks need to know about a transformer."""

    num_layers: int
    num_heads: int
    hidden_size: int
    intermediate_size: int


@dataclasses.dataclass(frozen=True)
class ParallelLayout:
    """How a model splits for tensor and pipeline parallelism (a family's ``ModelInfo.parallel_layout``):
    ``layers`` are the repeated blocks, ``first``/``last`` the cells before and after them, and
    ``shard(dp, mp)`` sets the cells' ``shard()`` strategies."""

    first: Sequence
    layers: Sequence
    last: Sequence
    shape: ModelShape
    shard: Optional[Callable[[int, int], None]] = None


def uses_auto_parallel(cfg: ParallelConfig) -> bool:
    return cfg.mode in AUTO_MODES


def check_device(cfg: ParallelConfig, device: str) -> None:
    """Model/pipeline parallel needs semi-auto mode, and semi-auto mode needs Ascend or GPU."""
    split = cfg.model_parallel > 1 or cfg.pipeline_stage > 1
    if split and not uses_auto_parallel(cfg):
        raise UserError(f"parallel.model_parallel={cfg.model_parallel} / pipeline_stage={cfg.pipeline_stage} "
                        f"need parallel.mode=semi_auto_parallel (now {cfg.mode})")
    if uses_auto_parallel(cfg) and device == "CPU":
        raise UserError(f"parallel.mode={cfg.mode} (model_parallel={cfg.model_parallel}, pipeline_stage="
                        f"{cfg.pipeline_stage}) needs Ascend or GPU: MindSpore refuses semi-auto and auto parallel "
                        "on CPU; on CPU use parallel.mode=data_parallel under msrun with model_parallel=1 and "
                        "pipeline_stage=1")


def check_layout(cfg: ParallelConfig, device_num: int, shape: Optional[ModelShape] = None,
                 batch_size: Optional[int] = None) -> None:
    """Device count, micro-batches and (with ``shape``) the model split; each problem is a UserError."""
    dp, mp, pp = cfg.data_parallel, cfg.model_parallel, cfg.pipeline_stage
    if dp * mp * pp != device_num:
        raise UserError(f"parallel: data_parallel {dp} x model_parallel {mp} x pipeline_stage {pp} = {dp * mp * pp} "
                        f"but {device_num} device(s) were launched; make the product equal the device count")
    if cfg.micro_batch_num < pp:
        raise UserError(f"parallel.micro_batch_num={cfg.micro_batch_num} is below pipeline_stage={pp}; "
                        f"use at least {pp} micro-batches so every stage has work")
    if batch_size is not None:  # the global batch: split into micro-batches, each split data_parallel ways
        micro_batches = cfg.micro_batch_num if pp > 1 else 1
        if batch_size % micro_batches:
            raise UserError(f"train.batch_size={batch_size} is not divisible by parallel.micro_batch_num="
                            f"{micro_batches}")
        if batch_size // micro_batches % dp:
            raise UserError(f"train.batch_size={batch_size} gives micro-batches of {batch_size // micro_batches} "
                            f"samples, not divisible by parallel.data_parallel={dp}; train.batch_size is the global "
                            f"batch, make it a multiple of {dp * micro_batches}")
    if shape is None:
        return
    for what, value in (("num_attention_heads", shape.num_heads), ("hidden_size", shape.hidden_size),
                        ("intermediate_size", shape.intermediate_size)):
        if value % mp:
            raise UserError(f"parallel.model_parallel={mp} does not divide the model's {what} {value}; "
                            f"pick a model_parallel that divides it")
    if shape.num_layers < pp:
        raise UserError(f"parallel.pipeline_stage={pp} exceeds the model's {shape.num_layers} layers; "
                        f"use at most {shape.num_layers} stages")


def check_trainer_support(cfg: ParallelConfig, train: TrainConfig) -> None:
    """Trainer features that assume whole weights on every rank are refused in (semi-)auto mode."""
    if not uses_auto_parallel(cfg):
        return
    if train.accumulation_steps > 1:
        raise UserError(f"train.accumulation_steps={train.accumulation_steps} is not supported with parallel.mode="
                        f"{cfg.mode}; accumulate with parallel.micro_batch_num (pipeline stages) or raise "
                        "train.batch_size, which is the global batch in this mode")
    if train.ema_decay:
        raise UserError(f"train.ema_decay={train.ema_decay} is not supported with parallel.mode={cfg.mode} "
                        "(weights are sliced across ranks); set train.ema_decay=0")
    if train.clip_grad_norm is not None and cfg.model_parallel > 1:
        raise UserError(f"train.clip_grad_norm={train.clip_grad_norm} is not supported with parallel.model_parallel="
                        f"{cfg.model_parallel}: each rank would clip by the norm of its own gradient slices; "
                        "unset train.clip_grad_norm or use parallel.model_parallel=1")


def context_active() -> bool:
    """Whether this process runs under a (semi-)auto-parallel context (set by ``configure_auto_parallel``)."""
    import mindspore as ms

    return ms.get_auto_parallel_context("parallel_mode") in AUTO_MODES


def check_single_device_build(cfg: ParallelConfig) -> None:
    """eval/export build one whole model: a (semi-)auto recipe must be told so, with merged weights."""
    if uses_auto_parallel(cfg) and not context_active():
        raise UserError(f"parallel.mode={cfg.mode}: training wrote one checkpoint slice per rank "
                        "(checkpoints/rank_<r>/); merge them with ms_suite.checkpoint.merge_slices(run_dir, "
                        "output) (docs/guides/bert.md: merging sliced checkpoints) and pass the merged file with "
                        "--set parallel.mode=standalone")


def context_kwargs(cfg: ParallelConfig, world_size: int, strategy_file: Optional[str] = None) -> Dict[str, Any]:
    """``set_auto_parallel_context`` arguments: full-batch input (every rank reads the global batch and
    MindSpore slices it by the layout) and, with ``strategy_file``, where this rank saves its strategy."""
    kwargs: Dict[str, Any] = dict(
        parallel_mode=cfg.mode, device_num=world_size, gradients_mean=True, pipeline_stages=cfg.pipeline_stage,
        enable_parallel_optimizer=cfg.optimizer_shard, dataset_strategy="full_batch")
    if strategy_file:
        kwargs["strategy_ckpt_config"] = {"save_file": strategy_file, "only_trainable_params": False}
    if cfg.mode == "auto_parallel":
        kwargs["search_mode"] = "sharding_propagation"
    return kwargs


def configure_auto_parallel(cfg: ParallelConfig, rank: int, world_size: int,
                            strategy_file: Optional[str] = None) -> None:
    """After ``init()``: check the device count and set MindSpore's auto-parallel context."""
    import mindspore as ms

    check_layout(cfg, world_size)
    ms.set_auto_parallel_context(**context_kwargs(cfg, world_size, strategy_file))
    log.info("%s: rank %d of %d, data %d x model %d x pipeline %d", cfg.mode, rank, world_size,
             cfg.data_parallel, cfg.model_parallel, cfg.pipeline_stage)


def stage_of(index: int, count: int, stages: int) -> int:
    """Pipeline stage of layer ``index`` of ``count`` when split as evenly as possible."""
    return index * stages // count


def apply_layout(cfg: ParallelConfig, layout: ParallelLayout) -> List[int]:
    """Set strategies, pipeline stages and recompute on a model's cells: the repeated ``layers`` are
    split evenly over the stages (and recomputed when asked), ``first`` cells run on stage 0 and
    ``last`` cells on the final stage; ``shard`` runs in semi-auto parallel only. Returns each layer's stage.
    """
    layers = layout.layers
    stages = [stage_of(i, len(layers), cfg.pipeline_stage) for i in range(len(layers))]
    if cfg.mode == "semi_auto_parallel" and layout.shard is not None:
        layout.shard(cfg.data_parallel, cfg.model_parallel)
    if cfg.pipeline_stage > 1:
        for cell in layout.first:
            cell.pipeline_stage = 0
        for cell, stage in zip(layers, stages):
            cell.pipeline_stage = stage
        for cell in layout.last:
            cell.pipeline_stage = cfg.pipeline_stage - 1
    if cfg.recompute:
        for cell in layers:
            cell.recompute()
    return stages


def pipeline_loss(loss_cell, cfg: ParallelConfig):
    """``loss_cell`` split into ``micro_batch_num`` micro-batches when pipelining, else unchanged."""
    if cfg.pipeline_stage <= 1:
        return loss_cell
    from mindspore.parallel.nn import Pipeline

    return Pipeline(loss_cell, cfg.micro_batch_num)
