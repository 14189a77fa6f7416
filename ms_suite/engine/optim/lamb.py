"""LAMB for CPU, composed from standard ops (MindSpore's fused ``Lamb`` kernel is Ascend/GPU only)."""
from __future__ import annotations

from mindspore import nn, ops

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
