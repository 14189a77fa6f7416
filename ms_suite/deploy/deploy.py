"""Export, verify and describe in one call: what ``ms-suite export`` and ``compress`` run."""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mindspore import Tensor, nn

from ms_suite.config import Config
from ms_suite.data import build_dataset
from ms_suite.deploy.export import export_model, signature
from ms_suite.deploy.runtime import load_runtime
from ms_suite.deploy.verify import (FP32, Tolerance, Verification, check_tolerance, io_specs, verify_export,
                                    write_manifest)
from ms_suite.errors import UserError


@dataclasses.dataclass
class Deployed:
    path: str
    format: str
    manifest: str
    verification: Optional[Verification]


def eval_samples(cfg: Config, num_classes: int, example_inputs: Sequence[Tensor], batch: int) -> List[np.ndarray]:
    """The first ``batch`` samples of the recipe's eval split, one array per network input
    (images; or token ids, attention mask, segment ids), in the inputs' dtypes."""
    try:
        dataset = build_dataset(cfg.data, "eval", batch, seed=cfg.train.seed, num_classes=num_classes)
    except UserError as err:
        raise UserError(f"verification runs eval samples through the exported file, but {err} "
                        "(or pass --no-verify to skip the check)") from None
    columns = next(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    return [np.ascontiguousarray(column.astype(example.asnumpy().dtype))
            for column, example in zip(columns, example_inputs)]


def export_verified(net: nn.Cell, task_name: str, example_inputs: Sequence[Tensor], output: str, fmt: str,
                    samples: Optional[Sequence[np.ndarray]], source: Dict[str, Any]) -> Deployed:
    """Export ``net``; with ``samples``, run the file in its runtime, compare it with ``net`` and
    raise a one-line UserError when it is out of tolerance. Writes ``<file>.json`` either way."""
    path, axes = export_model(net, example_inputs, output, fmt, signature(task_name))
    return verify_file(net, task_name, path, fmt, samples, axes, source)


def verify_file(net: nn.Cell, task_name: str, path: str, fmt: str, samples: Optional[Sequence[np.ndarray]],
                axes: Dict[str, str], source: Dict[str, Any], tolerance: Tolerance = FP32) -> Deployed:
    """Verify the written file at ``path`` against ``net`` (unless ``samples`` is None), write its
    manifest, and raise when it is out of tolerance."""
    sig = signature(task_name)
    verification, specs = None, {"inputs": [], "outputs": []}
    if samples is not None:
        runtime = load_runtime(path, fmt)
        verification = verify_export(net, runtime, samples, tolerance=tolerance)
        specs = io_specs(runtime, sig, samples, [runtime.run(*(a[:1] for a in samples))])
    manifest = write_manifest(path, fmt, specs, axes, verification, source)
    if verification is not None:
        check_tolerance(verification, fmt, path)
    return Deployed(path, fmt, manifest, verification)


def evaluate_file(path: str, fmt: str, cfg: Config, num_classes: int,
                  threads: Optional[int] = None) -> Dict[str, float]:
    """Top-1/top-5 accuracy (percent) and mean loss of the file at ``path`` over the whole eval split,
    from per-sample scores as the trainer computes them for the network."""
    from ms_suite.engine.evaluate import classification_metrics, join_samples, sample_scores

    runtime = load_runtime(path, fmt, threads)
    batch = cfg.eval.batch_size or cfg.train.batch_size
    dataset = build_dataset(cfg.data, "eval", batch, seed=cfg.train.seed, num_classes=num_classes)
    scores = [sample_scores(runtime.run(np.ascontiguousarray(images, np.float32)).astype(np.float64), labels)
              for images, labels in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)]
    return classification_metrics(join_samples(scores))


def train_batches(cfg: Config, num_classes: int, input_name: str, count: int) -> List[Dict[str, np.ndarray]]:
    """``count`` training batches, as the trainer sees them, as ONNX Runtime feeds (INT8 calibration)."""
    dataset = build_dataset(cfg.data, "train", cfg.train.batch_size, seed=cfg.train.seed, num_classes=num_classes)
    feeds = []
    for images, _ in dataset.create_tuple_iterator(num_epochs=1, output_numpy=True):
        feeds.append({input_name: np.ascontiguousarray(images, np.float32)})
        if len(feeds) == count:
            break
    return feeds
