"""The built-in optimizers (SGD with momentum/Nesterov, AdamW, LAMB), registered in
:data:`ms_suite.registry.OPTIMIZERS` as ``fn(groups, lr, cfg) -> nn.Optimizer``."""
from __future__ import annotations

from typing import List

import mindspore as ms
from mindspore import Tensor, nn

from ms_suite.config.schema import TrainConfig
from ms_suite.engine.optim.fused_momentum import FusedDecayMomentum, fused_momentum_applies
from ms_suite.engine.optim.lamb import StandardOpsLamb
from ms_suite.registry import OPTIMIZERS

NO_DECAY_MARKERS = ("gamma", "beta", "bias", "moving_", "layernorm", "layer_norm")


def param_groups(net: nn.Cell, cfg: TrainConfig) -> List[dict]:
    params = net.trainable_params()
    if not cfg.no_decay_bn_bias or cfg.weight_decay == 0:
        return [{"params": params, "weight_decay": cfg.weight_decay}]
    is_no_decay = [any(m in p.name.lower() for m in NO_DECAY_MARKERS) for p in params]
    no_decay = [p for p, skip in zip(params, is_no_decay) if skip]
    decay = [p for p, skip in zip(params, is_no_decay) if not skip]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


@OPTIMIZERS.register("sgd")
def sgd(groups: List[dict], lr: Tensor, cfg: TrainConfig) -> nn.Optimizer:
    """SGD with momentum (``train.momentum``; Nesterov with ``train.nesterov``); on CPU the decayed
    weights update in one kernel each (:class:`FusedDecayMomentum`, the same numbers)."""
    params = [p for group in groups for p in group["params"]]
    if fused_momentum_applies(params, cfg):
        return FusedDecayMomentum(groups, lr, cfg.momentum, cfg.weight_decay)
    return nn.Momentum(groups, learning_rate=lr, momentum=cfg.momentum, use_nesterov=cfg.nesterov)


@OPTIMIZERS.register("adamw")
def adamw(groups: List[dict], lr: Tensor, cfg: TrainConfig) -> nn.Optimizer:
    """AdamW (decoupled weight decay) with ``train.betas`` and ``train.eps``."""
    beta1, beta2 = cfg.betas
    return nn.AdamWeightDecay(groups, learning_rate=lr, beta1=beta1, beta2=beta2, eps=cfg.eps)


@OPTIMIZERS.register("lamb")
def lamb(groups: List[dict], lr: Tensor, cfg: TrainConfig) -> nn.Optimizer:
    """LAMB (layer-wise trust ratio); on CPU composed from standard ops (:class:`StandardOpsLamb`)."""
    beta1, beta2 = cfg.betas
    cls = StandardOpsLamb if ms.get_context("device_target") == "CPU" else nn.Lamb
    return cls(groups, learning_rate=lr, beta1=beta1, beta2=beta2, eps=cfg.eps)
