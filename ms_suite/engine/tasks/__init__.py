"""Trainer tasks, one file each, registered in :data:`ms_suite.registry.TASKS`: image classification,
BERT pretraining, text and token classification."""
from ms_suite.engine.tasks.base import Task, get_task, register_task

__all__ = ["Task", "get_task", "register_task"]
