"""Verify an exported file against the network it came from, and describe it in ``<file>.json``.

Parity is measured on real samples at batch 1 and at the eval batch size: the largest absolute
difference of the outputs, that difference relative to the largest reference output
(``max_rel``), and how often the arg-max over the last axis (the predicted class) agrees.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mindspore import Tensor, nn

from ms_suite.deploy.export import FILE_MODE, Signature
from ms_suite.deploy.runtime import Runtime, TensorSpec, first_output, numpy_specs
from ms_suite.errors import UserError


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a file may be from its network: ``max_rel`` (max |file - network| / max |network|)
    and ``min_agreement`` (percent of samples whose predicted class agrees); ``basis`` says why."""

    max_rel: float
    min_agreement: float
    basis: str


FP32 = Tolerance(1e-5, 100.0, "float export of the same network")


@dataclasses.dataclass
class Parity:
    batch: int
    max_abs: float
    max_rel: float
    top1_agreement: float  # percent


def parity(reference: np.ndarray, deployed: np.ndarray, batch: int) -> Parity:
    reference, deployed = reference.astype(np.float64), deployed.astype(np.float64)
    if reference.shape != deployed.shape:
        raise UserError(f"the exported file returns shape {list(deployed.shape)} where the network returns "
                        f"{list(reference.shape)}")
    max_abs = float(np.abs(reference - deployed).max())
    scale = float(np.abs(reference).max()) or 1.0
    agreement = 100.0 * float((reference.argmax(-1) == deployed.argmax(-1)).mean())
    return Parity(batch, max_abs, max_abs / scale, agreement)


def median_latency_ms(run, arrays: Sequence[np.ndarray], repeats: int) -> float:
    """Median wall time of ``run(*arrays)`` after one warm-up call."""
    run(*arrays)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(*arrays)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


@dataclasses.dataclass
class Verification:
    parity: List[Parity]
    latency_ms: Dict[int, float]  # batch size -> median latency
    tolerance: Tolerance
    within_tolerance: bool


def network_output(net: nn.Cell, arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The (first) output of ``net`` in eval mode for one array per input."""
    net.set_train(False)
    return first_output(net(*(Tensor(a) for a in arrays)))


def verify_export(net: nn.Cell, runtime: Runtime, samples: Sequence[np.ndarray], repeats: int = 20,
                  tolerance: Tolerance = FP32) -> Verification:
    """Run ``samples`` (one array per input, the eval batch) through ``net`` and the file, at batch 1
    and at the samples' batch size; compare and time the file."""
    results, latency = [], {}
    for batch in sorted({1, len(samples[0])}):
        arrays = [a[:batch] for a in samples]
        results.append(parity(network_output(net, arrays), runtime.run(*arrays), batch))
        latency[batch] = median_latency_ms(runtime.run, arrays, repeats if batch == 1 else max(3, repeats // 4))
    ok = all(p.max_rel <= tolerance.max_rel and p.top1_agreement >= tolerance.min_agreement for p in results)
    return Verification(results, latency, tolerance, ok)


def check_tolerance(verification: Verification, fmt: str, path: str) -> None:
    """One line naming the format and the error when the file is out of tolerance."""
    if verification.within_tolerance:
        return
    worst = max(verification.parity, key=lambda p: (p.max_rel, -p.top1_agreement))
    tolerance = verification.tolerance
    raise UserError(f"{fmt} export {path} fails verification at batch {worst.batch}: max relative error "
                    f"{worst.max_rel:.3g} (tolerance {tolerance.max_rel:.3g}), top-1 agreement "
                    f"{worst.top1_agreement:.1f}% (needs {tolerance.min_agreement:.3g}%); the file does not "
                    "compute what the network does")


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def io_specs(runtime: Runtime, sig: Signature, samples: Sequence[np.ndarray],
             outputs: Sequence[np.ndarray]) -> Dict[str, List[TensorSpec]]:
    """The file's inputs and outputs: as ONNX Runtime reports them, or from the signature for MINDIR."""
    if runtime.inputs:
        return {"inputs": runtime.inputs, "outputs": runtime.outputs}
    return {"inputs": numpy_specs(samples, sig.inputs, sig.axes),
            "outputs": numpy_specs(outputs, sig.outputs, {0: sig.axes[0]})}


def write_manifest(path: str, fmt: str, specs: Dict[str, List[TensorSpec]], axes: Dict[str, str],
                   verification: Optional[Verification], source: Dict[str, Any]) -> str:
    """Write ``<path>.json``: what the file is, what it takes and returns, how it was verified."""
    import mindspore as ms

    manifest = {"file": os.path.basename(path), "format": fmt, "bytes": os.path.getsize(path),
                "sha256": sha256(path),
                **{key: [dataclasses.asdict(s) for s in value] for key, value in specs.items()},
                "axes": axes, "source": source, "mindspore": ms.__version__}
    if fmt == "ONNX":
        import onnxruntime

        manifest["onnxruntime"] = onnxruntime.__version__
    if verification is not None:
        manifest["parity"] = [dataclasses.asdict(p) for p in verification.parity]
        manifest["latency_ms"] = {str(batch): ms_ for batch, ms_ in verification.latency_ms.items()}
        manifest["tolerance"] = dataclasses.asdict(verification.tolerance)
        manifest["within_tolerance"] = verification.within_tolerance
    target = path + ".json"
    with open(target, "w") as fh:
        json.dump(manifest, fh, indent=2)
    os.chmod(target, FILE_MODE)
    return target
