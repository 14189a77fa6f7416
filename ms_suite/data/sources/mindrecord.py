"""MindRecord shards holding an image (encoded or raw) and a label column per sample."""
from __future__ import annotations

import os
import re
from typing import List, Tuple

import mindspore.dataset as ds

from ms_suite.config.schema import DataConfig
from ms_suite.data import transforms
from ms_suite.data.source import IMAGE_COLUMNS, SPLITS, Source, data_root, read_mindrecord_header
from ms_suite.errors import UserError
from ms_suite.registry import DATASETS


@DATASETS.register("mindrecord")
class MindRecord(Source):
    """MindRecord files ``train*.mindrecord*`` and ``eval*``/``val*`` (encoded images or CHW float32)."""

    PREFIXES = {"train": ("train",), "eval": ("eval", "val")}

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        root = data_root(cfg)
        if len(cfg.columns) != 2:
            raise UserError(f"data.columns must name the image and the label column, got {cfg.columns}")
        self.files = {s: self._find(root, s) for s in SPLITS}
        schemas, self.num_samples = {}, {}
        for split, files in self.files.items():
            schemas[split], self.num_samples[split] = self._header(files)
        self.encoded = self._image_kind(schemas["train"], self.files["train"][0])
        self.num_classes = cfg.num_classes
        self.input_shape = ((3, cfg.image_size, cfg.image_size) if self.encoded
                            else tuple(schemas["train"][cfg.columns[0]]["shape"]))

    def _find(self, root: str, split: str) -> List[str]:
        names = sorted(os.listdir(root))
        for prefix in self.PREFIXES[split]:
            files = [os.path.join(root, n) for n in names if re.fullmatch(rf"{prefix}.*\.mindrecord\d*", n)]
            if files:
                return files
        wanted = " or ".join(f"{p}*.mindrecord" for p in self.PREFIXES[split])
        raise UserError(f"data.path: {root} has no {split} MindRecord files ({wanted} with its .db)")

    def _header(self, files: List[str]) -> Tuple[dict, int]:
        schema, count = read_mindrecord_header(files)
        missing = [c for c in self.cfg.columns if c not in schema]
        if missing:
            raise UserError(f"data.columns: {files[0]} has no column {missing[0]!r} "
                            f"(it has {', '.join(schema)}); set data.columns to [image, label] names")
        if count == 0:
            raise UserError(f"data.path: {files[0]} holds no samples; write the split again")
        return schema, count

    def _image_kind(self, schema: dict, file: str) -> bool:
        """True for encoded image bytes, False for a float32 CHW array."""
        field = schema[self.cfg.columns[0]]
        if field["type"] == "bytes":
            return True
        if field["type"] == "float32" and len(field.get("shape", [])) == 3 and min(field["shape"]) > 0:
            return False
        raise UserError(f"data.columns: image column {self.cfg.columns[0]!r} in {file} is {field}; "
                        "store encoded image bytes or a fixed-shape float32 CHW array")

    def leaf(self, split, sampler, seed, epoch):
        files = self.files[split]
        data = ds.MindDataset(files if len(files) > 1 else files[0], columns_list=list(self.cfg.columns),
                              sampler=sampler, num_parallel_workers=self.cfg.num_workers)
        if list(self.cfg.columns) != IMAGE_COLUMNS:
            data = data.rename(input_columns=list(self.cfg.columns), output_columns=IMAGE_COLUMNS)
        return data

    def image_ops(self, split):
        # Float arrays are used as stored (already preprocessed): no augmentation.
        return transforms.imagenet_ops(self.cfg, split == "train") if self.encoded else []
