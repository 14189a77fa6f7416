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
from ms_suite.deploy.verify import Verification, check_tolerance, io_specs, verify_export, write_manifest
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
        raise UserError(f"verification runs eval samples through the file but {err}; "
                        "point data.path at the dataset or pass --no-verify") from None
    columns = next(dataset.create_tuple_iterator(num_epochs=1, output_numpy=True))
    return [np.ascontiguousarray(column.astype(example.asnumpy().dtype))
            for column, example in zip(columns, example_inputs)]


def export_verified(net: nn.Cell, task_name: str, example_inputs: Sequence[Tensor], output: str, fmt: str,
                    samples: Optional[Sequence[np.ndarray]], source: Dict[str, Any]) -> Deployed:
    """Export ``net``; with ``samples``, run the file in its runtime, compare it with ``net`` and
    raise a one-line UserError when it is out of tolerance. Writes ``<file>.json`` either way."""
    sig = signature(task_name)
    path, axes = export_model(net, example_inputs, output, fmt, sig)
    verification, specs = None, None
    if samples is not None:
        runtime = load_runtime(path, fmt)
        verification = verify_export(net, runtime, samples)
        outputs = [runtime.run(*(a[:1] for a in samples))]
        specs = io_specs(runtime, sig, samples, outputs)
    else:
        specs = {"inputs": [], "outputs": []}
    manifest = write_manifest(path, fmt, specs, axes, verification, source)
    if verification is not None:
        check_tolerance(verification, fmt, path)
    return Deployed(path, fmt, manifest, verification)
