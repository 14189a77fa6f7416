"""Cross-entropy for hard (int) or soft (mixup/cutmix one-hot) labels, with label smoothing."""
from __future__ import annotations

from mindspore import nn, ops


class CrossEntropy(nn.Cell):
    """Mean cross-entropy. Int labels use label smoothing; float labels are soft targets."""

    def __init__(self, num_classes: int, label_smoothing: float = 0.0, soft_labels: bool = False):
        super().__init__()
        self.num_classes = num_classes
        self.smoothing = label_smoothing
        self.soft_labels = soft_labels
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, logits, labels):
        log_probs = self.log_softmax(logits.astype("float32"))
        if not self.soft_labels:
            labels = ops.one_hot(labels, self.num_classes, 1.0, 0.0)
        if self.smoothing > 0:
            labels = labels * (1.0 - self.smoothing) + self.smoothing / self.num_classes
        return -(labels * log_probs).sum(axis=-1).mean()


class NetWithLoss(nn.Cell):
    """``loss(net(inputs), labels)``; keeps the backbone's parameter names unchanged."""

    def __init__(self, net: nn.Cell, loss: nn.Cell):
        super().__init__(auto_prefix=False)
        self.net = net
        self.loss = loss

    def construct(self, inputs, labels):
        return self.loss(self.net(inputs), labels)
