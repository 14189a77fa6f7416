"""The compiled training step: grads, loss scaling, all-reduce, clipping, accumulation, update.

``TrainStep(apply, *batch)`` runs one micro-batch through ``net_with_loss(*batch) -> loss``.
With ``apply=False`` it only adds the gradients to the accumulation buffers; with
``apply=True`` it also updates the weights. ``apply`` is a Python bool, so graph mode compiles
one graph per value (one when there is no accumulation).

``parallel`` is the run's ``parallel.mode``. Data parallel all-reduces the gradients with
``nn.DistributedGradReducer``, or in ``grad_reduce_dtype`` and ``grad_buckets`` flat buffers
(:mod:`ms_suite.engine.grad_reduce`). Semi-auto/auto parallel leaves the reductions to MindSpore's
parallel pass (it inserts them from the layout), sums the overflow flag over all ranks (each
checked only its own gradient slices), and with ``micro_batches > 1`` (pipeline stages, the loss
cell wrapped in ``Pipeline``) takes the micro-batch gradients the pipeline pass accumulated from
``nn.PipelineGradReducer``, the pattern of MindSpore's own pipeline train cells.
"""
from __future__ import annotations

from typing import Optional

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.amp import all_finite

from ms_suite.engine.grad_reduce import build_grad_reducer
from ms_suite.runtime.auto_parallel import AUTO_MODES


class TrainStep(nn.Cell):
    """One training micro-step over ``net_with_loss`` with ``optimizer``."""

    def __init__(self, net_with_loss: nn.Cell, optimizer: nn.Optimizer, *, loss_scale: str = "none",
                 scale_value: float = 1024.0, scale_window: int = 1000, clip_norm: Optional[float] = None,
                 accumulation_steps: int = 1, parallel: str = "standalone", micro_batches: int = 1,
                 grad_reduce_dtype: str = "float32", grad_buckets: Optional[int] = None):
        super().__init__(auto_prefix=False)
        self.network = net_with_loss
        self.network.set_grad()
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.dynamic = loss_scale == "dynamic"
        # A standalone fp32 step without loss scaling has no overflow to skip: leaving out the
        # unscale, the finiteness check and its branch halves the compile time, and the trainer
        # still stops on a non-finite loss. Data parallel keeps them: without the branch after
        # DistributedGradReducer, MindSpore 2.7.2 on CPU updated the weights differently from the
        # same global batch in one process (max |dw| 4e-3 after 11 steps; 0 with the branch).
        self.check_overflow = loss_scale != "none" or parallel != "standalone"
        self.loss_scale = Parameter(Tensor(scale_value if loss_scale != "none" else 1.0, ms.float32),
                                    name="loss_scale", requires_grad=False)
        self.good_steps = Parameter(Tensor(0, ms.int32), name="loss_scale_good_steps", requires_grad=False)
        self.scale_window = scale_window
        self.clip_norm = clip_norm
        self.data_parallel = parallel == "data_parallel"
        self.reducer = (build_grad_reducer(self.weights, grad_reduce_dtype, grad_buckets)
                        if self.data_parallel else None)
        self.sliced = parallel in AUTO_MODES
        self.all_reduce = ops.AllReduce() if self.sliced else None
        # nn.PipelineGradReducer (construct(grads)), not mindspore.parallel.nn's: in 2.7.2 that one reads
        # an undefined `grads` unless the optimizer is sharded.
        self.micro_batches = micro_batches
        self.pipeline_reducer = nn.PipelineGradReducer(self.weights) if micro_batches > 1 else None
        self.accumulation_steps = accumulation_steps
        self.accum_grads = (self.weights.clone(prefix="accum_grads", init="zeros")
                            if accumulation_steps > 1 else None)

    def construct(self, apply: bool, *batch):
        loss = self.network(*batch)
        scale = self.loss_scale.astype(loss.dtype)
        if self.micro_batches > 1:  # a pipeline's loss sums its micro-batches: step on their mean
            loss, scale = loss / self.micro_batches, scale / self.micro_batches
        sens = ops.fill(loss.dtype, loss.shape, 1.0) * scale
        grads = self.grad(self.network, self.weights)(*batch, sens)
        if self.micro_batches > 1:
            grads = self.pipeline_reducer(grads)
        if self.check_overflow:
            grads = self._unscale(grads)
        if self.accumulation_steps > 1:
            grads = self._accumulate(grads)
            if not apply:  # depend: graph mode drops the buffer updates when nothing uses them
                return ops.depend(loss, grads), ops.ones((), ms.bool_)
        if self.data_parallel:
            grads = self.reducer(grads)
        if self.check_overflow:
            finite = self._finite_everywhere(grads)
        else:
            finite = ops.ones((), ms.bool_)
        if self.clip_norm is not None:
            grads = ops.clip_by_global_norm(grads, self.clip_norm)
        if not self.check_overflow:
            loss = ops.depend(loss, self.optimizer(grads))
        elif finite:
            loss = ops.depend(loss, self.optimizer(grads))
        if self.accumulation_steps > 1:
            loss = ops.depend(loss, self._reset_accumulation())
        return loss, finite

    def _finite_everywhere(self, grads):
        """True when every gradient is finite (on every rank when sliced); adjusts a dynamic scale."""
        finite = all_finite(grads)
        if self.sliced:  # every rank skips the update if any rank's slices overflowed
            finite = self.all_reduce(ops.logical_not(finite).astype(ms.float32)) < 0.5
        if self.dynamic:
            self._adjust_scale(finite)
        return finite

    def _unscale(self, grads):
        inv = 1.0 / self.loss_scale
        return tuple(g * inv.astype(g.dtype) for g in grads)

    def _accumulate(self, grads):
        """Add this micro-batch's mean-scaled grads to the buffers; return the buffers' values."""
        out = []
        for buf, grad in zip(self.accum_grads, grads):
            total = buf + grad / self.accumulation_steps
            out.append(ops.depend(total, ops.assign(buf, total)))
        return tuple(out)

    def _reset_accumulation(self):
        for buf in self.accum_grads:
            ops.assign(buf, ops.zeros_like(buf))
        return True

    def _adjust_scale(self, finite):
        grown = self.good_steps + 1
        grow = grown >= self.scale_window
        new_scale = ops.select(finite, ops.select(grow, self.loss_scale * 2.0, self.loss_scale),
                               ops.maximum(self.loss_scale / 2.0, 1.0))
        new_good = ops.select(finite, ops.select(grow, ops.zeros_like(grown), grown), ops.zeros_like(grown))
        ops.assign(self.loss_scale, new_scale)
        ops.assign(self.good_steps, new_good)


class EmaUpdate(nn.Cell):
    """``ema = decay * ema + (1 - decay) * weight`` for every parameter (BN statistics included)."""

    def __init__(self, net: nn.Cell, decay: float):
        super().__init__(auto_prefix=False)
        self.weights = ms.ParameterTuple(list(net.get_parameters()))
        self.ema = self.weights.clone(prefix="ema", init="same")
        self.decay = decay

    def construct(self):
        for ema, weight in zip(self.ema, self.weights):
            ops.assign(ema, ema * self.decay + weight * (1.0 - self.decay))
        return True

    def swap(self) -> None:
        """Exchange live weights and EMA weights (call twice to restore)."""
        for ema, weight in zip(self.ema, self.weights):
            live = weight.data.copy()
            weight.set_data(ema.data.copy())
            ema.set_data(live)
