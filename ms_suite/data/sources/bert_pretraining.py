"""BERT pretraining shards (masked LM + next sentence) written by ``ms-suite prepare-data bert``."""
from __future__ import annotations

import os
import re
from typing import List, Tuple

import mindspore.dataset as ds

from ms_suite.config.schema import DataConfig
from ms_suite.data.source import SPLITS, Source, TextInfo, data_root, read_mindrecord_header
from ms_suite.data.text import PRETRAINING_COLUMNS, SPLIT_FILES, read_data_meta
from ms_suite.errors import UserError
from ms_suite.registry import DATASETS


@DATASETS.register("bert_pretraining")
class BertPretraining(Source):
    """MindRecord shards from ``ms-suite prepare-data bert`` (or the MindSpore zoo's BERT format):
    ``train*.mindrecord`` and ``eval*.mindrecord`` with the MLM + NSP columns."""

    columns = PRETRAINING_COLUMNS
    num_classes = 2  # next-sentence labels

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        root = data_root(cfg)
        self.files = {s: self._find(root, s) for s in SPLITS}
        self.num_samples, self.seq_len = {}, 0
        for split, files in self.files.items():
            self.num_samples[split], self.seq_len = self._header(files)
        if cfg.seq_len and cfg.seq_len != self.seq_len:
            raise UserError(f"data.seq_len={cfg.seq_len} but {root} holds sequences of {self.seq_len} tokens; "
                            f"set data.seq_len={self.seq_len} (or null) or prepare the data again")
        self.input_shape = (self.seq_len,)
        self.meta = read_data_meta(root)

    def text_info(self) -> TextInfo:
        size = self.meta.get("vocab_size")
        return TextInfo(self.seq_len, int(size) if size else None, self.meta.get("vocab_file"))

    @staticmethod
    def _find(root: str, split: str) -> List[str]:
        names = sorted(os.listdir(root))
        for prefix in SPLIT_FILES[split]:
            files = [os.path.join(root, n) for n in names if re.fullmatch(rf"{prefix}.*\.mindrecord\d*", n)]
            if files:
                return files
        raise UserError(f"data.path: {root} has no {split}*.mindrecord shards; create them with "
                        f"`ms-suite prepare-data bert --output {root} ...`")

    @staticmethod
    def _header(files: List[str]) -> Tuple[int, int]:
        schema, count = read_mindrecord_header(files)
        missing = [c for c in PRETRAINING_COLUMNS if c not in schema]
        if missing:
            raise UserError(f"{files[0]} lacks the BERT pretraining column(s) {', '.join(missing)} "
                            f"(it has {', '.join(schema)}); create it with `ms-suite prepare-data bert`")
        if count == 0:
            raise UserError(f"{files[0]} holds no examples; use a larger corpus or a smaller --eval-fraction")
        return count, int(schema["input_ids"]["shape"][-1])

    def leaf(self, split, sampler, seed, epoch):
        files = self.files[split]
        return ds.MindDataset(files if len(files) > 1 else files[0], columns_list=list(self.columns),
                              sampler=sampler, num_parallel_workers=self.cfg.num_workers)
