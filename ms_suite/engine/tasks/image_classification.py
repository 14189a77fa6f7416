"""Image classification: images and int (or mixed one-hot) labels; cross-entropy; top-1/top-5."""
from __future__ import annotations

import numpy as np
from mindspore import Tensor

from ms_suite.engine.evaluate import classification_metrics, predict
from ms_suite.engine.loss import CrossEntropy, NetWithLoss
from ms_suite.engine.tasks.base import Task, register_task


@register_task("image-classification")
class ImageClassification(Task):
    """Images and int (or mixed one-hot) labels; cross-entropy; top-1/top-5 accuracy."""

    monitor = "top1"

    def loss_cell(self, net, cfg, num_classes):
        soft = cfg.data.mixup > 0 or cfg.data.cutmix > 0
        return NetWithLoss(net, CrossEntropy(num_classes, cfg.train.label_smoothing, soft_labels=soft))

    def predict(self, net, dataset, batch_size):
        return predict(net, dataset, batch_size)

    def metrics(self, outputs):
        return classification_metrics(outputs)

    def example_inputs(self, cfg, data_info, batch_size):
        return (Tensor(np.zeros((batch_size,) + tuple(data_info.input_shape), np.float32)),)
