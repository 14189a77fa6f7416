"""Text (pair) classification and token classification from CSV, TSV or JSONL files, tokenized with WordPiece."""
from __future__ import annotations

import os
from typing import Tuple

from ms_suite.config.schema import DataConfig
from ms_suite.data.source import SPLITS, Source, TextInfo, data_root, generator_dataset
from ms_suite.data.text import (CLASSIFICATION_COLUMNS, ClassificationSettings, classification_arrays, file_stamp,
                                find_split_file, load_tokenizer, resolve_vocab, vocab_setting)
from ms_suite.registry import DATASETS


@DATASETS.register("text_classification")
@DATASETS.register("token_classification")
class TextClassification(Source):
    """``train`` and ``eval``/``dev``/``val`` files (CSV, TSV or JSONL) in the ``data.path`` folder,
    or one such file of which ``data.val_split`` is held out; columns text, optional text pair and
    label. For ``token_classification`` (JSONL) the text column holds a list of words and the label
    column one tag per word. Tokenized once per run."""

    columns = CLASSIFICATION_COLUMNS

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        single = os.path.expanduser(cfg.path or "")
        if os.path.isfile(single):
            files: Tuple[str, ...] = (single,)
        else:
            files = tuple(find_split_file(data_root(cfg), s) for s in SPLITS)
        settings = ClassificationSettings.from_config(cfg)
        self.arrays, self.labels = classification_arrays(files, file_stamp(files), settings)
        self.num_classes = max(self.labels.values()) + 1
        self.seq_len = settings.seq_len
        self.input_shape = (self.seq_len,)
        self.num_samples = {s: len(a["label"]) for s, a in self.arrays.items()}

    def text_info(self) -> TextInfo:
        vocab_file = resolve_vocab(vocab_setting(self.cfg))
        return TextInfo(self.seq_len, len(load_tokenizer(vocab_file, self.cfg.lower_case)), vocab_file)

    def leaf(self, split, sampler, seed, epoch):
        arrays = self.arrays[split]
        return generator_dataset(len(arrays["label"]), lambda i: tuple(arrays[c][i] for c in self.columns), sampler,
                          self.cfg.num_workers, self.columns)
