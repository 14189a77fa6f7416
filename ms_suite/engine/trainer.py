"""The training loop: build everything from a Config, train with callbacks, evaluate, checkpoint.

Read ``Trainer.fit`` top to bottom: setup, optional resume, then a plain loop over epochs and
batches. Resume is exact: a checkpoint stores the optimizer state and LR position, and the data
order is a pure function of (seed, epoch), so the batches consumed in the interrupted epoch are
skipped and training continues with the very next one.

Semi-auto/auto parallel (``parallel.mode``, Ascend/GPU): every rank reads the global batch,
MindSpore reduces the gradients, each rank saves and resumes its own weight slice in
``checkpoints/rank_<r>/``, and evaluation waits for the merged checkpoint (``ms-suite eval``).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import random
import signal
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

import model_zoo
from ms_suite.checkpoint import (CheckpointManager, latest_valid, own_slice, rank_dir, read_checkpoint,
                                 step_checkpoints)
from ms_suite.config import Config, save_config, to_dict
from ms_suite.data import build_dataset, dataset_info, steps_per_epoch
from ms_suite.engine.callbacks import (Callback, CallbackList, Progress, RunContext, Timing, TrainState,
                                       recipe_callbacks)
from ms_suite.engine.interrupt import Interrupted, pending_stop_signal
from ms_suite.engine.model_config import META_FIELD, adopt_model_config, saved_model_config
from ms_suite.engine.optim import build_lr_schedule, build_optimizer
from ms_suite.engine.rundir import RunDir, deferred_log_file
from ms_suite.engine.tasks import get_task
from ms_suite.engine.evaluate import gather_samples
from ms_suite.engine.train_step import EmaUpdate, TrainStep
from ms_suite.errors import UserError, first_line
from ms_suite.models import model_info
from ms_suite.models.dropout import DropoutSeeds
from ms_suite.models.registry import model_config
from ms_suite.runtime import (DistInfo, RuntimeInfo, broadcast_parameters, compile_cache, init_distributed,
                              init_runtime, launch_device_id, replicas_in_sync)
from ms_suite.runtime.auto_parallel import check_trainer_support
from ms_suite.runtime.distributed import agree_on_step, last_stage_loss
from ms_suite.runtime.memory import peak_rss_mb
from ms_suite.version import IMPORT_TIME, __version__

log = logging.getLogger("ms_suite")


class TrainingDiverged(UserError):
    """The loss became NaN/inf: a user-fixable problem (learning rate, loss scale, data)."""


class TrainingCell(nn.Cell):
    """Everything a checkpoint must hold: the train step (weights, optimizer, loss scale) and EMA."""

    def __init__(self, step: TrainStep, ema: Optional[EmaUpdate]):
        super().__init__(auto_prefix=False)
        self.step = step
        self.ema = ema


ModelHook = Callable[[nn.Cell], nn.Cell]
LossHook = Callable[[nn.Cell, nn.Cell], nn.Cell]


class Trainer:
    """Train ``cfg`` into ``output_dir``. ``resume`` is None, ``"auto"`` or a checkpoint path.

    Every key of the recipe is honoured here, so ``Trainer(cfg, out).fit()`` writes the run directory
    ``ms-suite train`` writes: the progress display, metrics.jsonl, MFU and the step split, the
    heartbeat, and MindInsight summaries and a profiler window when the recipe enables them
    (:func:`ms_suite.engine.callbacks.recipe_callbacks`).

    Extension points (used by compression and tuning, so they need not fork the loop):
    further ``callbacks``; ``model_hook(net) -> net`` applied after pretrained weights are loaded and
    before the optimizer is built (e.g. Golden Stick's ``algo.apply``); ``loss_hook(net_with_loss,
    net) -> cell`` to replace the loss (e.g. distillation).
    """

    def __init__(self, cfg: Config, output_dir: str, resume: Optional[str] = None,
                 callbacks: Sequence[Callback] = (), progress: bool = True,
                 model_hook: Optional[ModelHook] = None, loss_hook: Optional[LossHook] = None):
        self.cfg = cfg
        self.run = RunDir(output_dir)
        self.resume = resume
        self.extra_callbacks = list(callbacks)
        self.progress = progress
        self.model_hook = model_hook
        self.loss_hook = loss_hook
        self.eval_seconds = []  # wall time of each evaluation
        self.eval_samples_per_rank = []  # samples each rank evaluated, last evaluation

    # ------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.cfg
        # A named --resume checkpoint is read first, so a bad file is the run's only output line.
        self._named_resume = read_checkpoint(self.resume) if self.resume not in (None, "auto") else None
        self.runtime: RuntimeInfo = init_runtime(cfg.runtime, cfg.train.seed, launch_device_id(cfg.parallel))
        check_trainer_support(cfg.parallel, cfg.train)
        self.dist: DistInfo = init_distributed(cfg.parallel, os.path.join(self.run.path, "strategy"))
        self.info = dataset_info(cfg.data)
        self._adopt_resume_model_config()
        self.task = get_task(model_info(cfg.model.name).task)
        self.monitor = cfg.checkpoint.monitor or self.task.monitor
        self.net, self.num_classes = self.task.build_model(cfg, self.info)
        self.model_config = model_config(self.net, cfg.model.name, self.num_classes, cfg.model.kwargs,
                                         self.info.input_shape)
        if self.model_hook is not None:
            self.net = self.model_hook(self.net)
        self._apply_amp()
        # Sliced (semi-auto/auto parallel) runs keep MindSpore's dropout: the hashed masks index whole tensors.
        self.dropout = DropoutSeeds(None if self.dist.sliced else self.net, cfg.train.seed)
        accum = cfg.train.accumulation_steps
        shards, _ = self.dist.data_shards  # 1 in semi-auto/auto parallel: train.batch_size is the global batch
        batches = steps_per_epoch(cfg.data, "train", cfg.train.batch_size, shards)
        self.steps_per_epoch = batches // accum
        if self.steps_per_epoch == 0:
            raise UserError(f"train.batch_size={cfg.train.batch_size} x accumulation {accum} x "
                            f"{shards} data shard(s) exceeds the {self.info.num_samples['train']} "
                            f"training samples of data.name={cfg.data.name}; lower train.batch_size")
        self.global_batch = cfg.train.batch_size * accum * shards
        peak_lr = cfg.train.lr * (self.global_batch / cfg.train.base_batch_size if cfg.train.scale_lr else 1.0)
        self.lr = build_lr_schedule(cfg.train, self.steps_per_epoch, peak_lr)
        optimizer = build_optimizer(self.net, cfg.train, self.lr)
        net_with_loss = self.task.loss_cell(self.net, cfg, self.num_classes)
        if self.loss_hook is not None:
            net_with_loss = self.loss_hook(net_with_loss, self.net)
        self.step = TrainStep(net_with_loss, optimizer, loss_scale=cfg.train.loss_scale,
                              scale_value=cfg.train.loss_scale_value, clip_norm=cfg.train.clip_grad_norm,
                              accumulation_steps=accum,
                              parallel=self.dist.mode if self.dist.world_size > 1 else "standalone",
                              micro_batches=cfg.parallel.micro_batch_num if self.dist.pipeline_stages > 1 else 1,
                              grad_reduce_dtype=cfg.parallel.grad_reduce_dtype, grad_buckets=cfg.parallel.grad_buckets)
        self.dropout.register_in(self.step)
        self.ema = EmaUpdate(self.net, cfg.train.ema_decay) if cfg.train.ema_decay else None
        self.state_cell = TrainingCell(self.step, self.ema)
        ckpt_dir = rank_dir(self.run.checkpoints, self.dist.rank) if self.dist.sliced else self.run.checkpoints
        self.ckpt = CheckpointManager(ckpt_dir, cfg.checkpoint.keep_last, cfg.checkpoint.keep_best,
                                      cfg.checkpoint.async_save)
        self._pending_slice = None  # (path, params) to load once the sliced step has compiled
        self._cache_entered = False

    # Keys that only change parameter *values* (the learning-rate table, initial weights, data), never
    # a graph's structure or constants; the shapes they imply are in the graph signature.
    VALUE_ONLY_KEYS = {"train": ("lr", "min_lr", "warmup_epochs", "warmup_start_factor", "step_epochs",
                                 "milestones", "gamma", "power", "seed", "log_every_steps"),
                       "data": ("path", "num_workers"), "eval": ("every_epochs",)}

    def _enter_compile_cache(self, dataset) -> None:
        """MindSpore's compile cache for the rest of the run, keyed on the built train cell and the
        batches it will see; entered once, before the step's first compile."""
        if not self._cache_entered:
            self._cache_entered = True
            self._cleanup.enter_context(compile_cache(self.runtime, self.cfg.runtime, self._graph_fingerprint(dataset)))

    def _graph_fingerprint(self, dataset) -> str:
        """What shapes the compiled graphs: every parameter of the training cell by name, shape and
        dtype (weights with the data's classes and vocabulary, optimizer state, accumulation buffers,
        EMA, loss scale, LR table), the batch signature, the optimizer class, the recipe minus
        bookkeeping and value-only keys (the constants of the step) and the rank layout."""
        params = [(p.name, tuple(p.shape), str(p.dtype)) for p in self.state_cell.get_parameters()]
        batch = [(tuple(shape), str(dtype)) for shape, dtype in zip(dataset.output_shapes(), dataset.output_types())]
        graph_cfg = to_dict(self.cfg)
        for section in ("checkpoint", "description", "base", "search_space", "tune"):
            graph_cfg.pop(section, None)
        for section, keys in self.VALUE_ONLY_KEYS.items():
            for key in keys:
                graph_cfg[section].pop(key, None)
        return json.dumps([graph_cfg, params, batch, type(self.step.optimizer).__name__, self.dist.rank,
                           self.dist.world_size, source_digest()], sort_keys=True, default=str)

    def _apply_amp(self) -> None:
        """Replace ``self.net`` with its mixed-precision version: O1 returns a rewritten network,
        O2/O3 wrap it so it returns float32 (the loss and the loss scale stay in float32)."""
        level = self.cfg.train.amp_level
        if level == "O0":
            return
        if self.runtime.device == "CPU":
            log.warning("train.amp_level=%s is not supported on CPU; training in float32 (O0)", level)
            return
        self.net = ms.amp.auto_mixed_precision(self.net, level)

    # ------------------------------------------------------------------ resume
    def _adopt_resume_model_config(self) -> None:
        """--resume builds the network its checkpoint stores (not the recipe's pretrained folder)."""
        path = self.resume
        if self._named_resume is not None:  # already read in full: its metadata is at hand
            saved = self._named_resume[1].get(META_FIELD)
        else:
            path = next(iter(step_checkpoints(self.run.checkpoints)), None) if path == "auto" else None
            saved = saved_model_config(path) if path else None
        if saved is not None:
            adopt_model_config(self.cfg, saved, path)

    def _restore(self, state: TrainState) -> Dict[str, Any]:
        """Load the resume checkpoint into the training cell; return its metadata."""
        found = self._resume_checkpoint()
        if self.dist.sliced and self.resume == "auto":
            agree_on_step(found[2]["step"] if found else 0, self.ckpt.directory)
        if found is None:
            return {}
        path, params, meta = found
        # The LR table is a pure function of the recipe; rebuilding it lets a finished run be
        # extended by resuming with more epochs. The position in it is the optimizer's global_step.
        params.pop("learning_rate", None)
        if self.dist.sliced:
            self._pending_slice = (path, params)  # parameters get their per-rank shapes when the step compiles
        else:
            self._load_state(path, params)
        state.epoch, state.step = meta["epoch"], meta["step"]
        state.step_in_epoch = meta["step_in_epoch"]
        _set_rng_state(meta.get("rng", {}))
        log.info("resumed from %s: epoch %d, step %d; %d of %d steps to go", path, state.epoch + 1, state.step,
                 max(state.total_steps - state.step, 0), state.total_steps)
        return meta

    def _resume_checkpoint(self) -> Optional[Tuple[str, Dict[str, Any], Dict[str, Any]]]:
        """(path, params, meta) to resume from, or None; sliced runs read this rank's own slice."""
        if not self.resume:
            return None
        if self.resume == "auto":
            found = latest_valid(self.ckpt.directory)
            if found is None:
                log.info("resume auto: no valid checkpoint in %s, starting fresh", self.ckpt.directory)
            return found
        if not self.dist.sliced:
            return (self.resume, *self._named_resume)
        path = own_slice(self.resume, self.dist.rank)
        return (path, *read_checkpoint(path))

    def _load_state(self, path: str, params: Dict[str, Any]) -> None:
        missing, _ = ms.load_param_into_net(self.state_cell, params, strict_load=True)
        missing = [name for name in missing if name not in ("learning_rate", "dropout_position")]
        if missing:
            raise UserError(f"checkpoint {path} does not match this recipe (missing {missing[:3]}); "
                            f"resume with the recipe that wrote it")

    def _load_slice(self, dataset) -> None:
        """Semi-auto/auto parallel: compile the step (on zeros shaped like a batch), which gives the
        parameters their per-rank shapes, then load this rank's slice; MindSpore's own order."""
        path, params = self._pending_slice
        shapes, dtypes = dataset.output_shapes(), dataset.output_types()
        self.step.compile(True, *(Tensor(np.zeros(shape, dtype)) for shape, dtype in zip(shapes, dtypes)))
        self._load_state(path, params)
        self._pending_slice = None

    def _meta(self, state: TrainState) -> Dict[str, Any]:
        return {"epoch": state.epoch, "step": state.step, "step_in_epoch": state.step_in_epoch,
                "best_metric": state.best_metric, "metrics": state.metrics, "model": self.cfg.model.name,
                "rng": _get_rng_state(), "ms_suite_version": __version__, META_FIELD: self.model_config}

    # ------------------------------------------------------------------ loop
    def fit(self) -> Dict[str, Any]:
        """Train, evaluate and write summary.json; returns the summary."""
        with contextlib.ExitStack() as self._cleanup:  # holds the train.log handler of this run
            self._start_log = self._cleanup.enter_context(deferred_log_file())
            try:
                return self._fit()
            except BaseException as err:  # into train.log when the run got that far; the CLI prints it
                log.error("run failed: %s", _describe(err), extra={"file_only": True})
                raise

    def _context(self) -> RunContext:
        return RunContext(self.cfg, self.run, self.runtime, self.dist, self.task, self.info, self.net, self.step,
                          self.global_batch, self.num_classes)

    def _open_run_dir(self) -> None:
        """The inputs are validated (data, model, resume checkpoint): write the run directory."""
        if self.dist.is_main:
            self.run.create()
            self._start_log(self.run.log_file)
            save_config(self.cfg, self.run.config_file)
        else:
            self._start_log(None)

    def _fit(self) -> Dict[str, Any]:
        wall_start = time.perf_counter()
        self._setup()
        cfg = self.cfg
        state = TrainState(epochs=cfg.train.epochs, steps_per_epoch=self.steps_per_epoch, context=self._context())
        meta = self._restore(state)
        self._open_run_dir()
        if self.dist.replicated:
            broadcast_parameters(self.state_cell.get_parameters())
        state.best_metric = meta.get("best_metric")
        callbacks = CallbackList([Progress(cfg.train.log_every_steps, self.progress and self.dist.is_main),
                                  *recipe_callbacks(cfg), *self.extra_callbacks])
        timing = Timing()
        last_ckpt, evaluated_at = None, -1
        self._log_start(state)
        if self.dist.sliced:
            log.info("%s: weights are sliced across ranks, so there is no evaluation during training; merge the "
                     "checkpoint slices (ms_suite.checkpoint.merge_slices) and run ms-suite eval",
                     self.dist.mode)
        callbacks.on_train_begin(state)
        while state.epoch < cfg.train.epochs and not state.stop:
            last_ckpt = self._train_epoch(state, callbacks, timing) or last_ckpt
            if state.stop:
                break
            if self._eval_due(state.epoch):
                state.metrics, evaluated_at = self._evaluate(), state.step
                log.info("epoch %d eval: %s", state.epoch + 1, _fmt_metrics(state.metrics))
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
            improved = self._improved(state.metrics, state.best_metric)
            if improved:
                state.best_metric = state.metrics[self.monitor]
            if self.dist.writes_checkpoints:
                last_ckpt = self.ckpt.save(self.state_cell, state.step, self._meta(state))
                if improved and cfg.checkpoint.keep_best:
                    self.ckpt.mark_best(last_ckpt)
            callbacks.on_epoch_end(state)
        self.ckpt.flush()
        if evaluated_at != state.step and not self.dist.sliced:  # stopped mid-epoch, or resumed a finished run
            state.metrics = self._evaluate()
        state.timing = timing
        callbacks.on_train_end(state)
        summary = self._summary(state, state.best_metric, timing, last_ckpt, time.perf_counter() - wall_start)
        summary.update(state.summary)
        if self.dist.replicated:
            summary["replicas_in_sync"] = replicas_in_sync(self.net.trainable_params(), self.dist)
        if self.dist.is_main:
            self.run.write_summary(summary)
        return summary

    def _train_epoch(self, state: TrainState, callbacks: Callback, timing: Timing) -> Optional[str]:
        cfg = self.cfg
        accum = cfg.train.accumulation_steps
        shards, shard_id = self.dist.data_shards
        dataset = build_dataset(cfg.data, "train", cfg.train.batch_size, seed=cfg.train.seed,
                                epoch=state.epoch, skip_batches=state.step_in_epoch * accum,
                                num_shards=shards, shard_id=shard_id, num_classes=self.num_classes)
        iterator = dataset.create_tuple_iterator(num_epochs=1)
        last_ckpt = None
        self.step.set_train(True)  # the top cell's flag selects the training graph (BN batch stats)
        self._enter_compile_cache(dataset)
        if self._pending_slice is not None:
            self._load_slice(dataset)
        while state.step_in_epoch < self.steps_per_epoch and not state.stop:
            loss, data_s, compute_s = self._optimizer_step(iterator, accum, state.step)
            first = state.step == 0 or timing.first_step_s == 0.0
            state.step += 1
            state.step_in_epoch += 1
            state.loss, state.data_s, state.compute_s = loss, data_s, compute_s
            state.lr = self._applied_lr()
            if first:
                timing.first_step_s = data_s + compute_s
                timing.time_to_first_step_s = time.time() - IMPORT_TIME
                log.info("first step done: %.1f s (graph compile included), %.1f s since launch",
                         timing.first_step_s, timing.time_to_first_step_s)
            else:
                timing.data_s += data_s
                timing.compute_s += compute_s
                timing.samples += self.global_batch
            state.samples_per_s = timing.samples_per_s
            callbacks.on_step_end(state)
            every = cfg.checkpoint.every_n_steps
            mid_epoch = state.step_in_epoch < self.steps_per_epoch
            signo = pending_stop_signal()  # SIGINT/SIGTERM held since launch: stop here, saving this step
            if (every and state.step % every == 0 or signo) and mid_epoch and self.dist.writes_checkpoints:
                last_ckpt = self.ckpt.save(self.state_cell, state.step, self._meta(state))
            if signo is not None:
                saved = f", saved {last_ckpt}" if mid_epoch and last_ckpt else ""
                raise Interrupted(signo, f"{signal.Signals(signo).name} at step {state.step}{saved}; continue "
                                         f"with --resume auto --output-dir {self.run.path}")
        return last_ckpt

    def _applied_lr(self) -> float:
        """The learning rate of the latest weight update. The LR position is the optimizer's
        global_step (what a checkpoint resumes from), which a skipped overflow step does not advance."""
        updates = int(self.step.optimizer.global_step.asnumpy().item())
        return float(self.lr[min(max(updates - 1, 0), len(self.lr) - 1)])

    def _optimizer_step(self, iterator, accum: int, done_steps: int):
        """Run ``accum`` micro-batches and the weight update after ``done_steps`` optimizer steps;
        returns (loss, data_s, compute_s)."""
        data_s = compute_s = 0.0
        losses = []
        for micro in range(accum):
            t0 = time.perf_counter()
            batch = next(iterator)
            t1 = time.perf_counter()
            self.dropout.set_position(done_steps * accum + micro)
            loss, finite = self._run_step(micro == accum - 1, batch)
            losses.append(float(loss.asnumpy()))
            t2 = time.perf_counter()
            data_s, compute_s = data_s + t1 - t0, compute_s + t2 - t1
        if self.ema is not None:
            self.ema()
        loss = float(np.mean(losses))
        if self.dist.pipeline_stages > 1:
            loss = last_stage_loss(loss, self.dist)
        if not math.isfinite(loss) and self.cfg.train.loss_scale != "dynamic":
            raise TrainingDiverged(f"loss became {loss} at step {self.step.optimizer.global_step.asnumpy()}; "
                                   f"lower train.lr (now {self.cfg.train.lr}) or set train.clip_grad_norm")
        return loss, data_s, compute_s

    def _run_step(self, apply: bool, batch):
        """The compiled step; a shape error while it compiles is the data's or the recipe's (classes,
        sequence length, channels), so it becomes a one-line UserError."""
        try:
            return self.step(apply, *batch)
        except (ValueError, TypeError, RuntimeError) as err:
            if "shape" not in str(err).lower():
                raise
            shapes = ", ".join("x".join(map(str, t.shape)) for t in batch)
            raise UserError(f"the training step does not fit the batches ({shapes}) of data.name={self.cfg.data.name}: "
                            f"{first_line(err)[:300]}; check model.num_classes, model.kwargs and data.* (seq_len, "
                            f"image_size, vocab) against the data") from None

    # ------------------------------------------------------------------ eval and summary
    def _eval_due(self, epoch: int) -> bool:
        every = self.cfg.eval.every_epochs
        due = bool(every) and (epoch + 1) % every == 0 or epoch + 1 == self.cfg.train.epochs
        return due and not self.dist.sliced  # sliced weights: evaluate the merged checkpoint instead

    def _evaluate(self) -> Dict[str, float]:
        """Metrics over the eval split. Data-parallel ranks predict their own shard and gather the
        per-sample outputs, so every rank computes the single-process metrics from the same arrays."""
        start = time.perf_counter()
        batch = self.cfg.eval.batch_size or self.cfg.train.batch_size
        shards, shard_id = self.dist.data_shards
        dataset = build_dataset(self.cfg.data, "eval", batch, seed=self.cfg.train.seed, num_shards=shards,
                                shard_id=shard_id, num_classes=self.num_classes)
        if self.ema is not None:
            self.ema.swap()
        try:
            if self.dist.replicated:  # BN statistics differ per rank: evaluate rank 0's, the ones its checkpoint holds
                broadcast_parameters([param for param in self.net.get_parameters() if not param.requires_grad])
            outputs = self.task.predict(self.net, dataset, batch)
        finally:
            if self.ema is not None:
                self.ema.swap()
        outputs, self.eval_samples_per_rank = gather_samples(outputs, self.dist)
        self.eval_seconds.append(time.perf_counter() - start)
        log.info("rank %d evaluated %d of %d eval samples in %.3f s", self.dist.rank,
                 self.eval_samples_per_rank[self.dist.rank], sum(self.eval_samples_per_rank), self.eval_seconds[-1])
        return self.task.metrics(outputs)

    def _improved(self, metrics: Dict[str, float], best: Optional[float]) -> bool:
        value = metrics.get(self.monitor)
        return value is not None and (best is None or value > best)

    def _log_start(self, state: TrainState) -> None:
        cfg = self.cfg
        classes = f" ({self.num_classes} classes)" if self.task.has_classes else ""
        log.info("model %s%s, data %s (%d train / %d eval samples), global batch %d, "
                 "%d steps/epoch x %d epochs, run dir %s", cfg.model.name, classes, cfg.data.name,
                 self.info.num_samples["train"], self.info.num_samples["eval"], self.global_batch,
                 self.steps_per_epoch, cfg.train.epochs, self.run.path)

    def _summary(self, state: TrainState, best: Optional[float], timing: Timing,
                 last_ckpt: Optional[str], wall_s: float) -> Dict[str, Any]:
        cfg = self.cfg
        return {
            "model": cfg.model.name, "dataset": cfg.data.name, "device": self.runtime.device,
            "device_reason": self.runtime.reason, "world_size": self.dist.world_size,
            "epochs": state.epoch, "steps": state.step, "global_batch_size": self.global_batch,
            "metrics": state.metrics, "best_metric": best, "monitor": self.monitor,
            "samples_per_s": round(timing.samples_per_s, 3),
            "data_wait_share": round(timing.data_wait_share, 4),
            "compile_s": round(timing.compile_s(self.global_batch), 3),
            "time_to_first_step_s": round(timing.time_to_first_step_s, 3), "wall_s": round(wall_s, 3),
            "eval_s": [round(seconds, 3) for seconds in self.eval_seconds],
            "eval_samples_per_rank": self.eval_samples_per_rank,
            "stopped_early": state.stop, "mindspore_version": ms.__version__,
            "ms_suite_version": __version__, "final_checkpoint": last_ckpt,
            "best_checkpoint": (os.path.join(self.run.checkpoints, "best.ckpt")
                                if best is not None and cfg.checkpoint.keep_best else None),
            "run_dir": self.run.path, "peak_rss_mb": peak_rss_mb(),
        }


@functools.lru_cache(maxsize=None)
def source_digest() -> str:
    """A digest of the suite's and the zoo's Python sources (part of every compile-cache key).

    Read once per process: the code a process runs is what it imported, so later runs in it
    (tuning trials, compression stages) reuse the digest instead of re-reading every file."""
    digest = hashlib.sha1()
    suite_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # ms_suite/
    for root in (suite_root, os.path.dirname(model_zoo.__file__)):
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(f for f in files if f.endswith(".py")):
                with open(os.path.join(folder, name), "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


def _describe(err: BaseException) -> str:
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted: {err}" if str(err) else "interrupted"
    return f"{type(err).__name__}: {first_line(err)}"


def _fmt_metrics(metrics: Dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "samples")


def _get_rng_state() -> Dict[str, Any]:
    state = np.random.get_state()
    return {"numpy": [state[0], state[1].tolist(), *state[2:]], "python": repr(random.getstate())}


def _set_rng_state(rng: Dict[str, Any]) -> None:
    if "numpy" in rng:
        name, keys, pos, has_gauss, cached = rng["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    if "python" in rng:
        import ast

        random.setstate(ast.literal_eval(rng["python"]))
