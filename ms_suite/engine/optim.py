"""Optimizers (SGD with momentum/Nesterov, AdamW, LAMB) with optional no-decay for norms and biases."""
from __future__ import annotations

from typing import Dict, List, Tuple

import mindspore as ms
import numpy as np
from mindspore import Tensor, jit, nn, ops

from ms_suite.config.schema import TrainConfig
from ms_suite.runtime.auto_parallel import context_active

_NO_DECAY_MARKERS = ("gamma", "beta", "bias", "moving_", "layernorm", "layer_norm")


def _param_groups(net: nn.Cell, cfg: TrainConfig) -> List[dict]:
    params = net.trainable_params()
    if not cfg.no_decay_bn_bias or cfg.weight_decay == 0:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    is_no_decay = [any(m in p.name.lower() for m in _NO_DECAY_MARKERS) for p in params]
    no_decay = [p for p, skip in zip(params, is_no_decay) if skip]
    decay = [p for p, skip in zip(params, is_no_decay) if not skip]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(net: nn.Cell, cfg: TrainConfig, lr: np.ndarray) -> nn.Optimizer:
    """An optimizer over ``net``'s trainable params driven by the per-step ``lr`` array."""
    groups = _param_groups(net, cfg)
    lr_tensor = Tensor(lr)
    if cfg.optimizer == "sgd" and fused_momentum_applies(net, cfg):
        return FusedDecayMomentum(groups, lr_tensor, cfg.momentum, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return nn.Momentum(groups, learning_rate=lr_tensor, momentum=cfg.momentum,
                           use_nesterov=cfg.nesterov)
    beta1, beta2 = cfg.betas
    if cfg.optimizer == "adamw":
        return nn.AdamWeightDecay(groups, learning_rate=lr_tensor, beta1=beta1, beta2=beta2, eps=cfg.eps)
    lamb = StandardOpsLamb if ms.get_context("device_target") == "CPU" else nn.Lamb
    return lamb(groups, learning_rate=lr_tensor, beta1=beta1, beta2=beta2, eps=cfg.eps)


def fused_momentum_applies(net: nn.Cell, cfg: TrainConfig) -> bool:
    """Whether :class:`FusedDecayMomentum` can stand in for ``nn.Momentum`` bit for bit: CPU, fp32
    weights, weight decay and momentum, no Nesterov (whose update ``ops.SGD`` orders differently),
    and whole weights (not sliced by a (semi-)auto-parallel layout, which its zero flags would not match)."""
    return (ms.get_context("device_target") == "CPU" and cfg.weight_decay > 0 and cfg.momentum > 0
            and not cfg.nesterov and not context_active()
            and all(p.dtype == ms.float32 for p in net.trainable_params()))


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


_lamb_update = ops.MultitypeFuncGraph("lamb_update")


@_lamb_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor", "Tensor",
                       "Tensor", "Bool", "Bool")
def _lamb_step(beta1, beta2, eps, step, lr, weight_decay, param, m, v, grad, decay_flag, optim_filter):
    """One LAMB update (the paper's algorithm, identity scaling) written with standard ops."""
    if not optim_filter:
        return grad
    grad = grad.astype(param.dtype)
    m_new = beta1 * m + (1.0 - beta1) * grad
    v_new = beta2 * v + (1.0 - beta2) * grad * grad
    step = step.astype(param.dtype)
    update = (m_new / (1.0 - ops.pow(beta1, step))) / (ops.sqrt(v_new / (1.0 - ops.pow(beta2, step))) + eps)
    if decay_flag:
        update = update + weight_decay * param
    w_norm, u_norm = ops.norm(param), ops.norm(update)
    trust = ops.select((w_norm > 0) & (u_norm > 0), w_norm / u_norm, ops.ones_like(w_norm))
    ops.assign(m, m_new)
    ops.assign(v, v_new)
    return ops.assign(param, param - lr * trust * update)


class StandardOpsLamb(nn.Lamb):
    """``nn.Lamb`` for CPU: MindSpore's fused ``Lamb`` kernel exists only on Ascend/GPU ("Unsupported
    op [Lamb] on CPU"), so the same update is composed from standard ops. State names
    (``lamb_m``, ``lamb_v``, ``global_step``) match ``nn.Lamb``, so checkpoints move between devices."""

    def construct(self, gradients):
        weight_decay = self.get_weight_decay()
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        gradients = self.gradients_centralization(gradients)
        if not self.is_group:
            weight_decay = (weight_decay,) * len(self.params)
        if not self.is_group_lr:
            lr = (lr,) * len(self.params)
        return self.hyper_map(ops.partial(_lamb_update, self.beta1, self.beta2, self.eps, self.global_step),
                              lr, weight_decay, self.params, self.moments1, self.moments2, gradients,
                              self.decay_flags, self.optim_filter)
