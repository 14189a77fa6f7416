"""Data pipelines over registered sources: embedded digits, CIFAR-10, ImageNet-style folders, MindRecord,
synthetic data and text (classification, token classification, BERT pretraining shards)."""
from ms_suite.data.datasets import build_dataset, dataset_info, steps_per_epoch, text_info
from ms_suite.data.source import DatasetInfo, Source, TextInfo

__all__ = ["DatasetInfo", "Source", "TextInfo", "build_dataset", "dataset_info", "steps_per_epoch", "text_info"]
