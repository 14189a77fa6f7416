"""Data pipelines: embedded digits, CIFAR-10, ImageNet-style folders, MindRecord and synthetic data."""
from ms_suite.data.datasets import DatasetInfo, build_dataset, dataset_info, steps_per_epoch

__all__ = ["DatasetInfo", "build_dataset", "dataset_info", "steps_per_epoch"]
