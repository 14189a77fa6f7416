"""Knowledge distillation: a student recipe learns from a frozen, trained teacher.

loss = (1 - alpha) * CE(student, labels) + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
"""
from __future__ import annotations

import os
from typing import Dict, List

from mindspore import nn, ops

from ms_suite.compression.base import Algorithm, TrainContext, register
from ms_suite.compression.report import channel_rows
from ms_suite.config import load_config
from ms_suite.errors import UserError


def freeze(net: nn.Cell) -> nn.Cell:
    """No gradients, and BatchNorm always uses its moving statistics, even inside a training step
    (``set_train(True)`` on the training cell reaches every sub-cell)."""
    for param in net.get_parameters():
        param.requires_grad = False
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.use_batch_statistics = False
    return net.set_train(False)


class DistillationLoss(nn.Cell):
    """Wraps the task's ``NetWithLoss`` (student + hard-label loss) and adds the teacher's KL term.

    The teacher's parameters are renamed ``teacher.*`` so checkpoints keep student and teacher apart.
    """

    def __init__(self, student_loss: nn.Cell, teacher: nn.Cell, temperature: float, alpha: float):
        super().__init__(auto_prefix=False)
        self.student_loss = student_loss
        self.teacher = teacher
        teacher.update_parameters_name("teacher.")
        self.temperature = temperature
        self.alpha = alpha
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, images, labels):
        logits = self.student_loss.net(images)
        hard = self.student_loss.loss(logits, labels)
        target = ops.stop_gradient(self.teacher(images))
        log_p_student = self.log_softmax(logits / self.temperature)
        log_p_teacher = self.log_softmax(target / self.temperature)
        kl = (ops.exp(log_p_teacher) * (log_p_teacher - log_p_student)).sum(axis=-1).mean()
        return (1.0 - self.alpha) * hard + self.alpha * self.temperature ** 2 * kl


@register
class Distill(Algorithm):
    """The recipe's model is the student; ``compression.distill`` names the teacher recipe and weights.
    The report's 'before' column is the teacher."""

    name = "distill"
    needs_pretrained = False
    notes = ("'before' is the teacher, 'after' the distilled student",)

    def check(self, device: str) -> None:
        s = self.settings
        for key in ("teacher_config", "teacher_checkpoint"):
            path = getattr(s, key)
            if not path:
                raise UserError(f"compression.distill.{key} is not set; distillation needs the teacher's recipe "
                                "and trained weights (compress --pretrained sets the checkpoint)")
            if not os.path.isfile(path):
                raise UserError(f"compression.distill.{key}: {path} not found; check the path")
        self.teacher_cfg = load_config(s.teacher_config)
        self.teacher_cfg.model.pretrained = s.teacher_checkpoint
        super().check(device)

    def reference(self, ctx: TrainContext) -> nn.Cell:
        if ctx.task.name != "image-classification":
            raise UserError(f"compression.algorithm=distill supports image classification, not {ctx.task.name}")
        teacher, classes = ctx.task.build_model(self.teacher_cfg, ctx.data_info)
        student_classes = self.cfg.model.num_classes or ctx.data_info.num_classes
        if classes != student_classes:
            raise UserError(f"teacher {self.settings.teacher_config} predicts {classes} classes but the student "
                            f"{student_classes}; set model.num_classes in one of them")
        self.teacher = teacher
        return teacher

    def train(self, ctx: TrainContext) -> nn.Cell:
        s = self.settings
        return ctx.fit(loss_hook=lambda net_with_loss, net: DistillationLoss(
            net_with_loss, freeze(self.teacher), s.temperature, s.alpha))

    def layers(self, before: nn.Cell, after: nn.Cell) -> List[Dict[str, object]]:
        return channel_rows(before, after)
