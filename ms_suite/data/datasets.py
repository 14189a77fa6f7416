"""Dataset sources and the shared one-epoch pipeline.

Every source is mappable: :func:`build_dataset` computes this rank's sample order itself
(:func:`shard_indices`) and feeds it with ``mindspore.dataset.SubsetSampler``, so the order is a
pure function of (seed, epoch, batch_size, num_shards, shard_id) and a mid-epoch resume skips
exactly the samples already seen.

Determinism: the ``digits`` and ``synthetic`` sources are generated in numpy per sample index, and
mixup/cutmix is drawn in numpy per (seed, epoch, micro-batch index) (:class:`BatchMixer`), so they
are bit-exact across a resume. Native MindData random ops (crops, flips) are seeded
with ``mindspore.dataset.config.set_seed`` from (seed, epoch, skip_batches): deterministic for a
fixed ``num_workers``, but a resumed epoch does not reproduce the crops of an uninterrupted run.
MindData reads that seed when the iterator is created, so create a train dataset's iterator
before building the next train dataset (eval datasets do not touch the seed).
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import os
import random
import re
import zipfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import mindspore.dataset as ds

from ms_suite.config.schema import DataConfig
from ms_suite.data import transforms
from ms_suite.errors import UserError

log = logging.getLogger("ms_suite")

SPLITS = ("train", "eval")
_COLUMNS = ["image", "label"]
_IMAGE_EXTENSIONS = [".JPEG", ".jpeg", ".jpg", ".JPG", ".png", ".PNG", ".bmp", ".BMP"]


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model and a schedule need to know about a dataset."""

    num_classes: int
    input_shape: Tuple[int, int, int]  # (C, H, W) the model sees
    num_samples: Dict[str, int]  # {"train": N, "eval": M}


# --------------------------------------------------------------------------- sources


class _Source:
    """A dataset type: what it holds (cheap to compute) and how to read a split in a given order."""

    num_classes: int
    input_shape: Tuple[int, ...]
    num_samples: Dict[str, int]
    columns: List[str] = _COLUMNS  # what leaf() yields, in order (text sources have their own)

    def __init__(self, cfg: DataConfig):
        self.cfg = cfg

    def leaf(self, split: str, sampler: ds.Sampler, seed: int, epoch: int) -> ds.Dataset:
        """Mappable dataset with ``self.columns`` read in ``sampler``'s order."""
        raise NotImplementedError

    def image_ops(self, split: str) -> list:
        """MindData ops turning a leaf image into a CHW float32 tensor (empty: already one)."""
        return []


class _Indexed:
    """Random-access GeneratorDataset source whose row ``i`` is ``fn(i)``."""

    def __init__(self, n: int, fn: Callable[[int], tuple]):
        self.n, self.fn = n, fn

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple:
        return self.fn(int(i))


def _generator(n: int, fn: Callable[[int], tuple], sampler: ds.Sampler, workers: int,
               columns: Sequence[str] = _COLUMNS) -> ds.Dataset:
    return ds.GeneratorDataset(_Indexed(n, fn), list(columns), sampler=sampler,
                               num_parallel_workers=workers, python_multiprocessing=False)


def _root(cfg: DataConfig) -> str:
    """``cfg.path`` as an existing folder, or a UserError saying what to set."""
    if not cfg.path:
        raise UserError(f"data.name={cfg.name} needs its dataset folder: set data.path")
    path = os.path.expanduser(cfg.path)
    if not os.path.isdir(path):
        raise UserError(f"data.path {cfg.path!r} does not exist or is not a folder; "
                        f"point data.path at the {cfg.name} dataset")
    return path


@functools.lru_cache(maxsize=4)
def _digits_arrays(val_split: float) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """sklearn's 8x8 digits on the 0-255 scale, zero-padded by 1 pixel, split stratified.

    The split is kept in the suite's cache folder (``$MS_SUITE_CACHE``), keyed by ``val_split`` and
    scikit-learn's version: importing scikit-learn takes longer than the rest of the suite's own
    start-up, and a launch that finds the file does not import it."""
    path = _digits_cache_file(val_split)
    try:
        with np.load(path) as saved:
            return {split: (saved[f"{split}_x"], saved[f"{split}_y"]) for split in ("train", "eval")}
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):  # none yet, or unreadable
        arrays = _split_digits(val_split)
    _save_quietly(path, {f"{split}_{k}": a for split, pair in arrays.items() for k, a in zip("xy", pair)})
    return arrays


def _digits_cache_file(val_split: float) -> str:
    from importlib.metadata import version

    from ms_suite.runtime.device import default_cache_dir

    return os.path.join(default_cache_dir(), "data", f"digits_split{val_split!r}_sklearn{version('scikit-learn')}.npz")


def _split_digits(val_split: float) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = np.pad(x.reshape(-1, 1, 8, 8) * (255.0 / 16.0), ((0, 0), (0, 0), (1, 1), (1, 1)))
    xt, xe, yt, ye = train_test_split(x.astype(np.float32), y.astype(np.int32), test_size=val_split,
                                      stratify=y, random_state=0)
    return {"train": (xt, yt), "eval": (xe, ye)}


def _save_quietly(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically; a folder that cannot be written only costs the cache."""
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as err:
        log.debug("digits split not cached at %s: %s", path, err)
        with contextlib.suppress(OSError):
            os.remove(tmp)


class _Digits(_Source):
    """Embedded scikit-learn digits, normalised and shift-augmented in numpy."""

    num_classes, input_shape = 10, (1, 8, 8)

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        arrays = _digits_arrays(cfg.val_split)
        train = arrays["train"][0][:, :, 1:-1, 1:-1]
        mean, std = transforms.mean_std(cfg, [float(train.mean())], [float(train.std())])
        self.data = {s: ((x - mean[0]) / std[0], y) for s, (x, y) in arrays.items()}
        self.num_samples = {s: len(y) for s, (_, y) in arrays.items()}

    def leaf(self, split, sampler, seed, epoch):
        images, labels = self.data[split]
        if split == "train" and self.cfg.augment:
            shifts = transforms.random_shifts(seed, epoch, len(labels))
        else:
            shifts = np.ones((len(labels), 2), dtype=np.int64)

        def row(i: int) -> tuple:
            dy, dx = shifts[i]
            return images[i, :, dy:dy + 8, dx:dx + 8], labels[i]

        return _generator(len(labels), row, sampler, self.cfg.num_workers)


class _Cifar10(_Source):
    """CIFAR-10 binary batches (``data_batch_1..5.bin``, ``test_batch.bin``)."""

    num_classes, input_shape = 10, (3, 32, 32)
    FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "eval": ["test_batch.bin"]}
    RECORD = 1 + 32 * 32 * 3
    OFFICIAL_RECORDS = 10000  # Cifar10Dataset reads exactly this many from every file

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        self.folder = self._find_folder(_root(cfg))
        self.records = {s: [self._count(os.path.join(self.folder, f)) for f in files]
                        for s, files in self.FILES.items()}
        self.num_samples = {s: sum(counts) for s, counts in self.records.items()}

    def _find_folder(self, root: str) -> str:
        expected = self.FILES["train"] + self.FILES["eval"]
        candidates = [root, os.path.join(root, "cifar-10-batches-bin")]
        folder = next((c for c in candidates if any(os.path.isfile(os.path.join(c, f)) for f in expected)), root)
        missing = [f for f in expected if not os.path.isfile(os.path.join(folder, f))]
        if missing:
            raise UserError(f"data.path: {folder} is missing {', '.join(missing)}; expected the CIFAR-10 binary "
                            "batches data_batch_1..5.bin and test_batch.bin there or in cifar-10-batches-bin/ "
                            "(extract cifar-10-binary.tar.gz)")
        return folder

    def _count(self, path: str) -> int:
        size = os.path.getsize(path)
        if size == 0 or size % self.RECORD:
            raise UserError(f"{path}: {size} bytes is not a whole number of {self.RECORD}-byte CIFAR-10 records "
                            "(truncated or corrupt); download the CIFAR-10 binary version again")
        return size // self.RECORD

    def leaf(self, split, sampler, seed, epoch):
        workers = self.cfg.num_workers
        if all(n == self.OFFICIAL_RECORDS for n in self.records[split]):
            usage = "train" if split == "train" else "test"
            return ds.Cifar10Dataset(self.folder, usage=usage, sampler=sampler, num_parallel_workers=workers)
        # Other record counts (subsets, test fixtures): Cifar10Dataset rejects them, read them in numpy.
        records = _read_records([os.path.join(self.folder, f) for f in self.FILES[split]], self.RECORD)

        def row(i: int) -> tuple:
            return records[i, 1:].reshape(3, 32, 32).transpose(1, 2, 0), records[i, 0]

        return _generator(len(records), row, sampler, workers)

    def image_ops(self, split):
        return transforms.cifar_ops(self.cfg, split == "train")


def _read_records(paths: Sequence[str], record: int) -> np.ndarray:
    return np.concatenate([np.fromfile(p, dtype=np.uint8).reshape(-1, record) for p in paths])


@functools.lru_cache(maxsize=8)
def _count_images(folder: str, classes: Tuple[str, ...]) -> int:
    """Images under ``folder/<class>/`` (cached: an ImageNet walk takes seconds, and runs every epoch)."""
    return ds.ImageFolderDataset(folder, extensions=_IMAGE_EXTENSIONS,
                                 class_indexing={c: i for i, c in enumerate(classes)}).get_dataset_size()


class _ImageFolder(_Source):
    """ImageNet layout: ``path/train/<class>/*`` and ``path/val/<class>/*``."""

    FOLDERS = {"train": "train", "eval": "val"}

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        root = _root(cfg)
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
                raise UserError(f"{self.dirs[split]} holds no images ({', '.join(_IMAGE_EXTENSIONS[::2])}); "
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
        return ds.ImageFolderDataset(self.dirs[split], decode=False, extensions=_IMAGE_EXTENSIONS,
                                     class_indexing=self.class_indexing, sampler=sampler,
                                     num_parallel_workers=self.cfg.num_workers)

    def image_ops(self, split):
        return transforms.imagenet_ops(self.cfg, split == "train")


class _MindRecord(_Source):
    """MindRecord files ``train*.mindrecord*`` and ``eval*``/``val*`` (encoded images or CHW float32)."""

    PREFIXES = {"train": ("train",), "eval": ("eval", "val")}

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        root = _root(cfg)
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
        if list(self.cfg.columns) != _COLUMNS:
            data = data.rename(input_columns=list(self.cfg.columns), output_columns=_COLUMNS)
        return data

    def image_ops(self, split):
        # Float arrays are used as stored (already preprocessed): no augmentation.
        return transforms.imagenet_ops(self.cfg, split == "train") if self.encoded else []


def read_mindrecord_header(files: List[str]) -> Tuple[dict, int]:
    """(schema, sample count) of MindRecord ``files``; an unreadable file is a UserError."""
    from mindspore.mindrecord import FileReader

    try:
        reader = FileReader(files if len(files) > 1 else files[0])
        schema, count = reader.schema(), reader.len()
        reader.close()
    except Exception as exc:  # MindRecord raises several types for unreadable files
        raise UserError(f"cannot read MindRecord {files[0]} ({str(exc).strip().splitlines()[0]}); "
                        "check the file and its .db index") from exc
    return schema, count


class _Synthetic(_Source):
    """Random tensors and labels, generated per index from the seed (throughput work)."""

    def __init__(self, cfg: DataConfig):
        super().__init__(cfg)
        self.num_classes = cfg.num_classes
        self.input_shape = (3, cfg.image_size, cfg.image_size)
        self.num_samples = {"train": cfg.synthetic_samples, "eval": max(1, cfg.synthetic_samples // 4)}

    def leaf(self, split, sampler, seed, epoch):
        stream, shape, classes = SPLITS.index(split), self.input_shape, self.num_classes

        def row(i: int) -> tuple:
            rng = np.random.default_rng([seed, stream, i])
            return rng.random(shape, dtype=np.float32), np.int32(rng.integers(classes))

        return _generator(self.num_samples[split], row, sampler, self.cfg.num_workers)


_SOURCES = {"digits": _Digits, "cifar10": _Cifar10, "imagefolder": _ImageFolder,
            "mindrecord": _MindRecord, "synthetic": _Synthetic}


def _source(cfg: DataConfig) -> _Source:
    if cfg.name in ("text_classification", "token_classification", "bert_pretraining"):
        from ms_suite.data.text import SOURCES  # text sources live in their own module

        return SOURCES[cfg.name](cfg)
    if cfg.name not in _SOURCES:
        raise UserError(f"data.name: unknown dataset {cfg.name!r}; choose one of {', '.join(_SOURCES)}")
    return _SOURCES[cfg.name](cfg)


# --------------------------------------------------------------------------- order and batching


def train_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``n`` train samples for ``epoch``, drawn from a generator seeded with the pair
    (seed, epoch): no two pairs share an order (``seed + epoch`` would make seed s, epoch e+1 replay
    seed s+1, epoch e)."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(n)


def shard_indices(n: int, split: str, *, seed: int = 0, epoch: int = 0, num_shards: int = 1,
                  shard_id: int = 0, batch_size: int = 1) -> np.ndarray:
    """This rank's sample indices for one epoch, before any resume skip.

    Train: :func:`train_order` cut into global batches of
    ``G = batch_size * num_shards`` (the incomplete last one dropped); at step ``i`` rank ``k``
    takes ``perm[i*G + k*batch_size : i*G + (k+1)*batch_size]``. So ``num_shards`` ranks see the
    same micro-batches as one process with ``batch_size`` and ``num_shards`` accumulation steps.
    Eval: sequential, not truncated (every sample is evaluated once); rank ``k`` takes the ``k``-th
    of ``num_shards`` contiguous runs of whole batches (:func:`eval_shard`), so each sample meets the
    same batch neighbours as in one process and the ranks' outputs, joined in rank order, are the
    single-process outputs.
    """
    _check_split(split)
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id={shard_id} is not in [0, num_shards={num_shards})")
    if split == "eval":
        return np.arange(n)[eval_shard(n, batch_size, num_shards, shard_id)]
    order = train_order(n, seed, epoch)
    steps = n // (batch_size * num_shards)
    return order[:steps * batch_size * num_shards].reshape(steps, num_shards, batch_size)[:, shard_id].ravel()


def eval_shard(n: int, batch_size: int, num_shards: int, shard_id: int) -> slice:
    """The eval samples of rank ``k = shard_id`` of ``S = num_shards``: the single-process batches
    ``k*m//S`` to ``(k+1)*m//S - 1`` of ``m = ceil(n / batch_size)``; ranks differ by at most one batch."""
    batches = math.ceil(n / batch_size)
    first, last = (batches * k // num_shards for k in (shard_id, shard_id + 1))
    return slice(first * batch_size, min(last * batch_size, n))


def _num_batches(n: int, split: str, batch_size: int, num_shards: int) -> int:
    if split == "train":
        return (n // num_shards) // batch_size
    return math.ceil(math.ceil(n / batch_size) / num_shards)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_train_batches(cfg: DataConfig, n: int, batch_size: int, num_shards: int) -> None:
    if _num_batches(n, "train", batch_size, num_shards) == 0:
        raise UserError(f"data: the {cfg.name} train split has {n // num_shards} samples per device, fewer "
                        f"than one batch of {batch_size}; lower train.batch_size")


def _seed_native_ops(seed: int, epoch: int, skip_batches: int) -> None:
    """Seed MindData's random ops from (seed, epoch, skip_batches).

    ``ds.config.set_seed`` also reseeds Python's ``random`` and ``numpy.random``; their states are
    restored so building a dataset has no effect on the caller's global generators.
    """
    value = int(np.random.SeedSequence([seed, epoch, skip_batches]).generate_state(1)[0])
    py_state, np_state = random.getstate(), np.random.get_state()
    ds.config.set_seed(value)
    random.setstate(py_state)
    np.random.set_state(np_state)


def _model_classes(cfg: DataConfig, dataset_classes: int, num_classes: Optional[int]) -> int:
    if num_classes is None:
        return dataset_classes
    if num_classes < dataset_classes:
        raise UserError(f"model.num_classes={num_classes} is smaller than the {dataset_classes} classes of "
                        f"data.name={cfg.name}; raise model.num_classes or leave it null")
    return num_classes


# --------------------------------------------------------------------------- public API


def dataset_info(cfg: DataConfig) -> DatasetInfo:
    """Classes, model input shape and split sizes, without decoding any image."""
    src = _source(cfg)
    return DatasetInfo(src.num_classes, tuple(src.input_shape), dict(src.num_samples))


def steps_per_epoch(cfg: DataConfig, split: str, batch_size: int, num_shards: int = 1) -> int:
    """Batches per epoch on one rank (eval: on the rank with the most samples)."""
    _check_split(split)
    n = _source(cfg).num_samples[split]
    if split == "train":
        _check_train_batches(cfg, n, batch_size, num_shards)
    return _num_batches(n, split, batch_size, num_shards)


def build_dataset(cfg: DataConfig, split: str, batch_size: int, *, seed: int = 0, epoch: int = 0,
                  skip_batches: int = 0, num_shards: int = 1, shard_id: int = 0,
                  num_classes: Optional[int] = None) -> ds.Dataset:
    """One epoch of ``split`` for this rank: batched ``image`` (float32 NCHW) and ``label`` columns.

    Labels are int32, or float32 one-hot vectors of ``num_classes`` (default: the dataset's) when
    mixup/cutmix is on; eval labels are always int32 and eval is never augmented or mixed.
    ``skip_batches`` resumes a train epoch after that many batches.
    """
    _check_split(split)
    cfg = _within_cpu_count(cfg)
    src, train = _source(cfg), split == "train"
    n = src.num_samples[split]
    indices = shard_indices(n, split, seed=seed, epoch=epoch, num_shards=num_shards, shard_id=shard_id,
                            batch_size=batch_size)
    if train:
        _check_train_batches(cfg, n, batch_size, num_shards)
        steps = len(indices) // batch_size
        if not 0 <= skip_batches <= steps:
            raise ValueError(f"skip_batches={skip_batches} is outside this epoch's {steps} batches")
        indices = indices[skip_batches * batch_size:]
        _seed_native_ops(seed, epoch, skip_batches)
    mixer = transforms.BatchMixer.build(cfg, seed, epoch, skip_batches, num_shards, shard_id) if train else None
    return _pipeline(src, split, indices.tolist(), batch_size,
                     _model_classes(cfg, src.num_classes, num_classes), seed, epoch, mixer)


def _within_cpu_count(cfg: DataConfig) -> DataConfig:
    """MindData refuses more workers than cores; recipes written for big hosts still run here."""
    cores = os.cpu_count() or 1
    if cfg.num_workers <= cores:
        return cfg
    log.info("data.num_workers=%d > %d CPU cores here; using %d", cfg.num_workers, cores, cores)
    return dataclasses.replace(cfg, num_workers=cores)


def _pipeline(src: _Source, split: str, indices: Sequence[int], batch_size: int, classes: int,
              seed: int, epoch: int, mixer: Optional[transforms.BatchMixer]) -> ds.Dataset:
    """Read ``indices`` in order, transform, batch (and mix) them."""
    cfg, train = src.cfg, split == "train"
    # An empty SubsetSampler crashes MindData (segfault): read one row and drop its batch instead.
    data = src.leaf(split, ds.SubsetSampler(list(indices) or [0]), seed, epoch)
    image_ops = src.image_ops(split)
    if image_ops:
        data = data.map(image_ops, "image", num_parallel_workers=cfg.num_workers, python_multiprocessing=False)
    if "label" in src.columns:
        data = data.map(transforms.label_ops(classes if mixer else None), "label")
    if mixer:
        data = data.batch(batch_size, drop_remainder=train, per_batch_map=mixer, input_columns=["image", "label"])
    else:
        data = data.batch(batch_size, drop_remainder=train)
    return data if indices else data.skip(1)
