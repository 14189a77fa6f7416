"""Data pipelines: order, sharding, resume, every source on tiny fixtures, and the user errors."""
from __future__ import annotations

import io
import os
from typing import List, Tuple

import numpy as np
import pytest
from PIL import Image

from ms_suite.config.schema import DataConfig
from ms_suite.data import DatasetInfo, build_dataset, dataset_info, steps_per_epoch
from ms_suite.data.datasets import shard_indices, train_order
from ms_suite.data.transforms import CIFAR_MEAN, CIFAR_STD, BatchMixer
from ms_suite.errors import UserError

RECORD = 3073


def collect(data) -> Tuple[np.ndarray, np.ndarray]:
    """All batches of a one-epoch dataset, as (images, labels) stacked per batch."""
    batches = list(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    return np.stack([b[0] for b in batches]), np.stack([b[1] for b in batches])


def rows(data) -> Tuple[np.ndarray, np.ndarray]:
    """All samples of a dataset in order, batches concatenated."""
    batches = list(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def write_cifar(folder, records: int = 4, test_records: int = 4) -> List[bytes]:
    """Fake CIFAR-10 binary batches; returns the test file's records."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.RandomState(0)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        n = test_records if name == "test_batch.bin" else records
        recs = [bytes([k % 10]) + rng.randint(0, 256, 3072, dtype=np.uint8).tobytes() for k in range(min(n, 3))]
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"".join(recs))
            f.truncate(n * RECORD)  # zero records after the first three (sparse for big files)
    return recs


def write_images(folder, classes, per_class: int) -> None:
    rng = np.random.RandomState(1)
    for c in classes:
        os.makedirs(folder / c, exist_ok=True)
        for k in range(per_class):
            Image.fromarray(rng.randint(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / c / f"{k}.JPEG")


def jpeg_bytes(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 256, (20, 24, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def write_mindrecord(path, schema: dict, rows_: List[dict]) -> None:
    from mindspore.mindrecord import FileWriter

    writer = FileWriter(str(path), shard_num=1, overwrite=True)
    writer.set_page_size(1 << 15)  # keep the files small
    writer.set_header_size(1 << 14)
    writer.add_schema(schema, "test")
    writer.write_raw_data(rows_)
    writer.commit()


# --------------------------------------------------------------------------- digits: order and sharding


def test_digits_info_shapes_and_splits():
    cfg = DataConfig(num_workers=1)
    info = dataset_info(cfg)
    assert info == DatasetInfo(10, (1, 8, 8), {"train": 1437, "eval": 360})
    images, labels = collect(build_dataset(cfg, "train", 100))
    assert images.shape == (14, 100, 1, 8, 8) and images.dtype == np.float32
    assert labels.dtype == np.int32 and set(np.unique(labels)) == set(range(10))
    assert steps_per_epoch(cfg, "train", 100) == 14 and steps_per_epoch(cfg, "eval", 100) == 4
    eval_images, _ = rows(build_dataset(cfg, "eval", 100))
    assert eval_images.shape == (360, 1, 8, 8)
    train_rows = images.reshape(-1, 64)
    assert abs(train_rows.mean()) < 0.1 and abs(train_rows.std() - 1) < 0.1  # normalised (shifts pad zeros)


def test_train_order_seeded_and_resume_is_exact():
    cfg = DataConfig(augment=True, num_workers=2)
    full = collect(build_dataset(cfg, "train", 64, seed=3, epoch=0))
    again = collect(build_dataset(cfg, "train", 64, seed=3, epoch=0))
    other = collect(build_dataset(cfg, "train", 64, seed=3, epoch=1))
    resumed = collect(build_dataset(cfg, "train", 64, seed=3, epoch=0, skip_batches=5))
    np.testing.assert_array_equal(full[0], again[0])
    np.testing.assert_array_equal(full[1], again[1])
    assert not np.array_equal(full[1], other[1])
    np.testing.assert_array_equal(resumed[0], full[0][5:])
    np.testing.assert_array_equal(resumed[1], full[1][5:])


def test_train_order_is_distinct_for_every_seed_and_epoch():
    """seed s at epoch e+1 must not replay seed s+1 at epoch e (as a seed + epoch generator would)."""
    orders = {(seed, epoch): shard_indices(1437, "train", seed=seed, epoch=epoch, batch_size=1).tobytes()
              for seed in range(4) for epoch in range(4)}
    assert len(set(orders.values())) == len(orders)
    for seed in range(4):
        assert sorted(np.frombuffer(orders[seed, 0], dtype=np.int64)) == list(range(1437))


def test_train_shards_take_consecutive_batches_of_one_global_batch():
    n, batch, shards = 1437, 5, 2
    perm = train_order(n, seed=7, epoch=2)
    parts = [shard_indices(n, "train", seed=7, epoch=2, num_shards=shards, shard_id=k, batch_size=batch)
             for k in range(shards)]
    steps = n // (batch * shards)
    assert len(parts[0]) == len(parts[1]) == steps * batch
    assert not set(parts[0]) & set(parts[1])
    # global step i: rank k reads perm[i*G + k*B : i*G + (k+1)*B] with G = B * shards
    interleaved = np.stack([p.reshape(steps, batch) for p in parts], axis=1).ravel()
    np.testing.assert_array_equal(interleaved, perm[:steps * batch * shards])

    # The ranks' batches are exactly the micro-batches of one process accumulating `shards` steps.
    cfg = DataConfig(augment=True)
    full = rows(build_dataset(cfg, "train", 2, seed=7, epoch=2))
    single = [x[:len(x) - len(x) % 4].reshape(-1, 2, 2, *x.shape[1:]) for x in full]
    for k in range(2):
        shard = rows(build_dataset(cfg, "train", 2, seed=7, epoch=2, num_shards=2, shard_id=k))
        np.testing.assert_array_equal(shard[0], single[0][:, k].reshape(shard[0].shape))
        np.testing.assert_array_equal(shard[1], single[1][:, k].reshape(shard[1].shape))


def test_eval_is_sequential_deterministic_and_sharded_by_whole_batches():
    cfg = DataConfig(augment=True)
    first, second = rows(build_dataset(cfg, "eval", 64)), rows(build_dataset(cfg, "eval", 64))
    np.testing.assert_array_equal(first[0], second[0])
    assert len(first[1]) == 360  # drop_remainder=False
    # 360 samples = 52 batches of 7 (the last one short): ranks read batches 0-16, 17-33 and 34-51.
    shards = [rows(build_dataset(cfg, "eval", 7, num_shards=3, shard_id=k)) for k in range(3)]
    assert [len(images) for images, _ in shards] == [17 * 7, 17 * 7, 360 - 34 * 7]
    np.testing.assert_array_equal(np.concatenate([images for images, _ in shards]), first[0])
    assert steps_per_epoch(cfg, "eval", 7, num_shards=3) == 18
    # Fewer batches than ranks: the first rank reads nothing, the batch is not split.
    assert [len(shard_indices(5, "eval", num_shards=2, shard_id=k, batch_size=7)) for k in (0, 1)] == [0, 5]


def test_resume_at_epoch_end_yields_nothing():
    cfg = DataConfig(num_workers=1)
    steps = steps_per_epoch(cfg, "train", 256)
    data = build_dataset(cfg, "train", 256, skip_batches=steps)
    assert list(data.create_tuple_iterator(num_epochs=1)) == []


def test_mixup_and_cutmix_give_float_one_hot_labels():
    cfg = DataConfig(mixup=0.4, cutmix=1.0, num_workers=1)
    images, labels = collect(build_dataset(cfg, "train", 32, num_classes=12))
    assert labels.dtype == np.float32 and labels.shape == (44, 32, 12)
    np.testing.assert_allclose(labels.sum(-1), 1.0, rtol=1e-5)
    assert (labels[..., 10:] == 0).all() and (labels.max(-1) < 1).any()  # some batches are mixed
    _, eval_labels = collect(build_dataset(cfg, "eval", 360))
    assert eval_labels.dtype == np.int32


@pytest.mark.parametrize("mix", [{"mixup": 0.2}, {"cutmix": 0.5}, {"mixup": 0.2, "cutmix": 0.2, "mix_prob": 0.7}])
def test_mixed_batches_are_exact_across_a_resume_and_match_accumulating_shards(mix):
    cfg = DataConfig(num_workers=2, **mix)
    full = collect(build_dataset(cfg, "train", 16, seed=5, epoch=1))
    resumed = collect(build_dataset(cfg, "train", 16, seed=5, epoch=1, skip_batches=7))
    assert (full[1].max(-1) < 1).any()  # mixing happened
    np.testing.assert_array_equal(resumed[0], full[0][7:])
    np.testing.assert_array_equal(resumed[1], full[1][7:])
    # Rank k of 2 at step i mixes like micro-batch k of step i in one process (2 x 8 samples).
    halves = [collect(build_dataset(cfg, "train", 8, seed=5, epoch=1, num_shards=2, shard_id=k)) for k in (0, 1)]
    single = collect(build_dataset(cfg, "train", 8, seed=5, epoch=1))
    steps = len(halves[0][1])
    for k in (0, 1):
        np.testing.assert_array_equal(halves[k][1], single[1][k:2 * steps:2])


def test_cutmix_pastes_one_box_and_weights_labels_by_its_area():
    cfg = DataConfig(cutmix=1.0)
    images = np.arange(2 * 1 * 10 * 10, dtype=np.float32).reshape(2, 1, 10, 10)
    labels = np.eye(2, dtype=np.float32)
    mixer = BatchMixer(cfg, seed=0, epoch=0)
    draws = (mixer.mix(images, labels, np.random.default_rng(seed)) for seed in range(20))
    mixed, mixed_labels = next((x, y) for x, y in draws if (x != images).any())  # partner is the other image
    pasted = mixed != images
    swapped = np.flatnonzero(pasted[0, 0].any(1)), np.flatnonzero(pasted[0, 0].any(0))
    box = pasted[0, 0][swapped[0][0]:swapped[0][-1] + 1, swapped[1][0]:swapped[1][-1] + 1]
    assert box.all() and pasted[0].sum() == box.size  # one solid rectangle
    np.testing.assert_array_equal(mixed[0][pasted[0]], images[1][pasted[0]])
    np.testing.assert_allclose(mixed_labels[0], [1 - box.size / 100, box.size / 100], rtol=1e-6)


def test_digits_errors():
    with pytest.raises(UserError, match="model.num_classes"):
        build_dataset(DataConfig(), "train", 8, num_classes=5)
    with pytest.raises(UserError, match="train.batch_size"):
        build_dataset(DataConfig(), "train", 1000, num_shards=2)
    with pytest.raises(UserError, match="data.mean"):
        dataset_info(DataConfig(mean=[1.0, 2.0, 3.0]))


# --------------------------------------------------------------------------- cifar10


def test_cifar10_shapes_in_subfolder(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-bin")
    cfg = DataConfig(name="cifar10", path=str(tmp_path), num_workers=1)
    assert dataset_info(cfg) == DatasetInfo(10, (3, 32, 32), {"train": 20, "eval": 4})
    images, labels = collect(build_dataset(cfg, "train", 4, seed=1))
    assert images.shape == (5, 4, 3, 32, 32) and images.dtype == np.float32 and labels.dtype == np.int32


def test_native_augmentation_is_seeded_and_leaves_global_rngs_alone(tmp_path):
    write_cifar(tmp_path)
    cfg = DataConfig(name="cifar10", path=str(tmp_path), num_workers=2, mixup=0.5)
    np.random.seed(11)
    expected_draw = np.random.rand()
    np.random.seed(11)
    first = collect(build_dataset(cfg, "train", 4, seed=1))
    assert np.random.rand() == expected_draw
    again = collect(build_dataset(cfg, "train", 4, seed=1))
    other = collect(build_dataset(cfg, "train", 4, seed=1, epoch=1))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


@pytest.mark.parametrize("test_records", [4, 10000])  # numpy reader, native Cifar10Dataset
def test_cifar10_eval_pixels_match_the_records(tmp_path, test_records):
    recs = write_cifar(tmp_path, test_records=test_records)
    cfg = DataConfig(name="cifar10", path=str(tmp_path), num_workers=1)
    image, label = next(build_dataset(cfg, "eval", 3).create_tuple_iterator(num_epochs=1, output_numpy=True))
    raw = np.stack([np.frombuffer(r[1:], np.uint8).reshape(3, 32, 32) for r in recs]).astype(np.float32)
    expected = (raw - np.array(CIFAR_MEAN).reshape(3, 1, 1)) / np.array(CIFAR_STD).reshape(3, 1, 1)
    np.testing.assert_allclose(image, expected, atol=1e-4)
    assert label.tolist() == [r[0] for r in recs]


def test_cifar10_errors(tmp_path):
    write_cifar(tmp_path)
    with open(tmp_path / "data_batch_3.bin", "ab") as f:
        f.write(b"\0" * 100)
    with pytest.raises(UserError, match="data_batch_3.bin"):
        dataset_info(DataConfig(name="cifar10", path=str(tmp_path)))
    os.remove(tmp_path / "test_batch.bin")
    with pytest.raises(UserError, match="test_batch.bin"):
        dataset_info(DataConfig(name="cifar10", path=str(tmp_path)))
    missing = str(tmp_path / "nowhere")
    with pytest.raises(UserError, match="nowhere"):
        build_dataset(DataConfig(name="cifar10", path=missing), "train", 4)
    with pytest.raises(UserError, match="data.path"):
        dataset_info(DataConfig(name="cifar10"))


# --------------------------------------------------------------------------- imagefolder, mindrecord, synthetic


def test_imagefolder_train_and_eval(tmp_path):
    write_images(tmp_path / "train", ["cat", "dog"], 3)
    write_images(tmp_path / "val", ["cat", "dog"], 2)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    cfg = DataConfig(name="imagefolder", path=str(tmp_path), image_size=16, eval_resize=18, num_workers=1)
    assert dataset_info(cfg) == DatasetInfo(2, (3, 16, 16), {"train": 6, "eval": 4})
    images, labels = collect(build_dataset(cfg, "train", 3, seed=0))
    assert images.shape == (2, 3, 3, 16, 16) and images.dtype == np.float32
    assert sorted(labels.ravel().tolist()) == [0, 0, 0, 1, 1, 1]
    images, labels = rows(build_dataset(cfg, "eval", 3))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [0, 0, 1, 1]


def test_imagefolder_errors(tmp_path):
    cfg = DataConfig(name="imagefolder", path=str(tmp_path))
    write_images(tmp_path / "train", ["cat", "dog"], 1)
    with pytest.raises(UserError, match="val"):
        dataset_info(cfg)
    write_images(tmp_path / "val", ["zebra"], 1)
    with pytest.raises(UserError, match="zebra"):
        dataset_info(cfg)
    os.remove(tmp_path / "val" / "zebra" / "0.JPEG")
    os.rename(tmp_path / "val" / "zebra", tmp_path / "val" / "cat")
    with pytest.raises(UserError, match="no images"):
        dataset_info(cfg)


def test_mindrecord_encoded_images(tmp_path):
    schema = {"img": {"type": "bytes"}, "y": {"type": "int64"}}
    write_mindrecord(tmp_path / "train.mindrecord", schema, [{"img": jpeg_bytes(k), "y": k % 3} for k in range(6)])
    write_mindrecord(tmp_path / "val.mindrecord", schema, [{"img": jpeg_bytes(k), "y": k % 3} for k in range(4)])
    cfg = DataConfig(name="mindrecord", path=str(tmp_path), columns=["img", "y"], num_classes=3,
                     image_size=16, num_workers=1)
    assert dataset_info(cfg) == DatasetInfo(3, (3, 16, 16), {"train": 6, "eval": 4})
    images, labels = collect(build_dataset(cfg, "train", 2, seed=1))
    assert images.shape == (3, 2, 3, 16, 16) and images.dtype == np.float32 and labels.dtype == np.int32
    _, labels = rows(build_dataset(cfg, "eval", 3))
    assert labels.tolist() == [0, 1, 2, 0]


def test_mindrecord_arrays_and_errors(tmp_path):
    with pytest.raises(UserError, match="train"):
        dataset_info(DataConfig(name="mindrecord", path=str(tmp_path)))
    schema = {"image": {"type": "float32", "shape": [3, 4, 4]}, "label": {"type": "int32"}}
    data = [{"image": np.full((3, 4, 4), k, np.float32), "label": k} for k in range(5)]
    for name in ("train.mindrecord", "eval.mindrecord"):
        write_mindrecord(tmp_path / name, schema, data)
    cfg = DataConfig(name="mindrecord", path=str(tmp_path), num_classes=5, num_workers=1)
    assert dataset_info(cfg).input_shape == (3, 4, 4)
    images, labels = rows(build_dataset(cfg, "train", 5, seed=2))
    np.testing.assert_array_equal(images[:, 0, 0, 0], labels)
    assert sorted(labels.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(UserError, match="data.columns"):
        dataset_info(DataConfig(name="mindrecord", path=str(tmp_path), columns=["data", "label"]))


def test_synthetic():
    cfg = DataConfig(name="synthetic", image_size=8, num_classes=7, synthetic_samples=40, num_workers=1)
    assert dataset_info(cfg) == DatasetInfo(7, (3, 8, 8), {"train": 40, "eval": 10})
    first = collect(build_dataset(cfg, "train", 8, seed=5))
    again = collect(build_dataset(cfg, "train", 8, seed=5))
    assert first[0].shape == (5, 8, 3, 8, 8) and first[0].dtype == np.float32
    assert first[1].min() >= 0 and first[1].max() < 7
    np.testing.assert_array_equal(first[0], again[0])
    assert rows(build_dataset(cfg, "eval", 8))[0].shape == (10, 3, 8, 8)
