"""ImageNet-style folders: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg``."""
from __future__ import annotations

import functools
import os
from typing import List, Tuple

import mindspore.dataset as ds

from ms_suite.config.schema import DataConfig
from ms_suite.data import transforms
from ms_suite.data.source import Source, data_root
from ms_suite.errors import UserError
from ms_suite.registry import DATASETS

IMAGE_EXTENSIONS = [".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG", ".bmp", ".BMP"]


@functools.lru_cache(maxsize=8)
def _count_images(folder: str, classes: Tuple[str, ...]) -> int:
    """Images under ``folder/<class>/`` (cached: an ImageNet walk takes seconds, and runs every epoch)."""
    return ds.ImageFolderDataset(folder, extensions=IMAGE_EXTENSIONS,
                                 class_indexing={c: i for i, c in enumerate(classes)}).get_dataset_size()


@DATASETS.register("imagefolder")
class ImageFolder(Source):
    """ImageNet layout: ``path/train/<class>/*`` and ``path/val/<class>/*``."""

    FOLDERS = {"train": "train", "eval": "val"}

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        root = data_root(cfg)
        self.dirs = {s: os.path.join(root, d) for s, d in self.FOLDERS.items()}
        classes = {s: self._classes(d) for s, d in self.dirs.items()}
        unknown = sorted(set(classes["eval"]) - set(classes["train"]))
        if unknown:
            raise UserError(f"{self.dirs['eval']} has classes missing from train/: {', '.join(unknown[:5])}; "
                            "val/ must use the train/ class folders")
        self.class_indexing = {c: i for i, c in enumerate(classes["train"])}
        self.num_classes = len(self.class_indexing)
        self.input_shape = (3, cfg.image_size, cfg.image_size)
        self.num_samples = {s: _count_images(d, tuple(classes[s])) for s, d in self.dirs.items()}
        for split, n in self.num_samples.items():
            if n == 0:
                raise UserError(f"{self.dirs[split]} holds no images ({', '.join(IMAGE_EXTENSIONS[::2])}); "
                                "put them in one subfolder per class")

    def _classes(self, folder: str) -> List[str]:
        if not os.path.isdir(folder):
            raise UserError(f"data.path: {folder} is missing; imagefolder needs train/<class>/ and val/<class>/ "
                            f"under {self.cfg.path}")
        classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
        if not classes:
            raise UserError(f"{folder} has no class subfolders; put images in {folder}/<class>/")
        return classes

    def leaf(self, split, sampler, seed, epoch):
        return ds.ImageFolderDataset(self.dirs[split], decode=False, extensions=IMAGE_EXTENSIONS,
                                     class_indexing=self.class_indexing, sampler=sampler,
                                     num_parallel_workers=self.cfg.num_workers)

    def image_ops(self, split):
        return transforms.imagenet_ops(self.cfg, split == "train")
