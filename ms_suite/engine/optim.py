"""Optimizers (SGD with momentum/Nesterov, AdamW, LAMB) with optional no-decay for norms and biases."""
from __future__ import annotations

from typing import List

import numpy as np
from mindspore import Tensor, nn

from ms_suite.config.schema import TrainConfig

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
    if cfg.optimizer == "sgd":
        return nn.Momentum(groups, learning_rate=lr_tensor, momentum=cfg.momentum,
                           use_nesterov=cfg.nesterov)
    beta1, beta2 = cfg.betas
    if cfg.optimizer == "adamw":
        return nn.AdamWeightDecay(groups, learning_rate=lr_tensor, beta1=beta1, beta2=beta2, eps=cfg.eps)
    return nn.Lamb(groups, learning_rate=lr_tensor, beta1=beta1, beta2=beta2, eps=cfg.eps)
