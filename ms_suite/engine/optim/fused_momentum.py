"""SGD with momentum and weight decay in one CPU kernel per weight, bit-identical to ``nn.Momentum``."""
from __future__ import annotations

from typing import Dict, Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, jit, nn, ops

from ms_suite.config.schema import TrainConfig
from ms_suite.runtime.auto_parallel import context_active


def fused_momentum_applies(params, cfg: TrainConfig) -> bool:
    """Whether :class:`FusedDecayMomentum` can stand in for ``nn.Momentum`` bit for bit: CPU, fp32
    weights, weight decay and momentum, no Nesterov (whose update ``ops.SGD`` orders differently),
    and whole weights (not sliced by a (semi-)auto-parallel layout, which its zero flags would not match)."""
    return (ms.get_context("device_target") == "CPU" and cfg.weight_decay > 0 and cfg.momentum > 0
            and not cfg.nesterov and not context_active() and all(p.dtype == ms.float32 for p in params))


_fused_momentum = ops.MultitypeFuncGraph("fused_momentum")


@_fused_momentum.register("Function", "Function", "Tensor", "Tensor", "Bool", "Tensor", "Tensor", "Tensor",
                          "Tensor")
def _fused_momentum_step(sgd, apply_momentum, momentum, lr, decay, stat, gradient, weight, moment):
    """One parameter's update: decay + momentum + step in one ``ops.SGD``, or ``ApplyMomentum``."""
    if decay:
        return ops.depend(True, sgd(weight, gradient, lr, moment, momentum, stat))
    return ops.depend(True, apply_momentum(weight, moment, lr, gradient, momentum))


class FusedDecayMomentum(nn.Momentum):
    """``nn.Momentum`` whose weight-decayed parameters update in one CPU kernel each.

    ``nn.Momentum`` adds the decay with a Mul and an AddN per parameter before ``ApplyMomentum``:
    three kernels and about ten passes over every weight. ``ops.SGD`` (dampening 0, a zero ``stat``)
    computes the same ``g + w * wd``, ``m = m * momentum + g``, ``w -= lr * m`` in one kernel with
    the same float32 rounding, so the weights match ``nn.Momentum``'s bit for bit. Undecayed
    parameters (BatchNorm, biases) keep ``ApplyMomentum``. Parameters, moments and checkpoint names
    are ``nn.Momentum``'s. Use it where :func:`fused_momentum_applies`.
    """

    def __init__(self, params, learning_rate, momentum: float, weight_decay: float) -> None:
        super().__init__(params, learning_rate=learning_rate, momentum=momentum, weight_decay=weight_decay)
        self.sgd = ops.SGD(dampening=0.0, weight_decay=weight_decay, nesterov=False)
        self.stats = zero_stats(self.params)

    @jit(backend="ms_backend")
    def construct(self, gradients):
        gradients = self.gradients_centralization(gradients)
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        if self.is_group_lr:
            return self.hyper_map_reverse(ops.partial(_fused_momentum, self.sgd, self.opt, self.momentum),
                                          lr, self.decay_flags, self.stats, gradients, self.params, self.moments)
        return self.hyper_map_reverse(ops.partial(_fused_momentum, self.sgd, self.opt, self.momentum, lr),
                                      self.decay_flags, self.stats, gradients, self.params, self.moments)


def zero_stats(params) -> Tuple[Tensor, ...]:
    """``ops.SGD``'s per-element first-step flags, all zero (plain momentum from a zero moment, which
    the kernel then never writes): one constant per distinct shape, shared, and kept out of checkpoints."""
    zeros: Dict[tuple, Tensor] = {}
    return tuple(zeros.setdefault(tuple(p.shape), Tensor(np.zeros(p.shape, np.float32))) for p in params)
