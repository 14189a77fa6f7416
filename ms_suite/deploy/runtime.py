"""Run an exported file in its own runtime: MINDIR through ``mindspore.load`` + ``nn.GraphCell``,
ONNX through ONNX Runtime's CPU provider."""
from __future__ import annotations

import dataclasses
from typing import Callable, List, Optional, Sequence

import numpy as np

from ms_suite.errors import UserError


@dataclasses.dataclass
class TensorSpec:
    name: str
    dtype: str
    shape: List[object]  # ints, or the name of a symbolic axis


@dataclasses.dataclass
class Runtime:
    """A loaded file: ``run(*arrays)`` returns its first output as a numpy array."""

    format: str
    run: Callable[..., np.ndarray]
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    session: object = None  # the ONNX Runtime session (None for MINDIR)


def onnx_session(path: str, threads: Optional[int] = None, optimized_path: Optional[str] = None):
    """An ONNX Runtime CPU session; ``threads`` fixes the intra-op thread count (default: ORT's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the console is the suite's
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_path:
        options.optimized_model_filepath = optimized_path
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for unreadable graphs
        raise UserError(f"ONNX Runtime cannot load {path}: {str(err).splitlines()[0][:300]}") from None


def _onnx_runtime(path: str, threads: Optional[int]) -> Runtime:
    session = onnx_session(path, threads)
    names = [value.name for value in session.get_inputs()]
    first = session.get_outputs()[0].name

    def run(*arrays: np.ndarray) -> np.ndarray:
        return session.run([first], dict(zip(names, arrays)))[0]

    def specs(values) -> List[TensorSpec]:
        return [TensorSpec(v.name, v.type.replace("tensor(", "").rstrip(")"), list(v.shape)) for v in values]

    return Runtime("ONNX", run, specs(session.get_inputs()), specs(session.get_outputs()), session)


def first_output(out) -> np.ndarray:
    """A MindSpore cell's (first) output as a numpy array."""
    return (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()


def _mindir_runtime(path: str) -> Runtime:
    import mindspore as ms

    try:
        graph = ms.load(path)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"mindspore.load cannot read {path}: {str(err).strip().splitlines()[0][:300]}") from None
    cell = ms.nn.GraphCell(graph)

    def run(*arrays: np.ndarray) -> np.ndarray:
        return first_output(cell(*(ms.Tensor(a) for a in arrays)))

    return Runtime("MINDIR", run, [], [])


def load_runtime(path: str, fmt: str, threads: Optional[int] = None) -> Runtime:
    """Load ``path`` (a MINDIR or ONNX file) for inference on this host's CPU."""
    if fmt == "ONNX":
        return _onnx_runtime(path, threads)
    if fmt == "MINDIR":
        return _mindir_runtime(path)
    raise UserError(f"{fmt} files run on Ascend only; cannot verify {path} here (pass --no-verify)")


def numpy_specs(arrays: Sequence[np.ndarray], names: Sequence[str], axes: dict) -> List[TensorSpec]:
    """Specs of arrays, with the named variable axes in place of their sizes."""
    return [TensorSpec(name, str(a.dtype), [axes.get(i, d) for i, d in enumerate(a.shape)])
            for name, a in zip(names, arrays)]
