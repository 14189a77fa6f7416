"""Pretrained weights: load a MindSpore checkpoint into a model, and read third-party (PyTorch) state
dicts for the families' converters (``model_zoo/*``, registered in :data:`ms_suite.registry.CONVERTERS`)."""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, List, Optional, TypeVar

import mindspore as ms
import numpy as np

from ms_suite.errors import UserError
from ms_suite.checkpoint import model_weights, read_checkpoint

log = logging.getLogger("ms_suite")
T = TypeVar("T")

SHOWN = 5  # how many offending names an error lists


def load_pretrained(net: ms.nn.Cell, path: str, model_name: Optional[str] = None, *,
                    allow_new_head: bool = True) -> None:
    """Load the model weights in ``path`` (EMA copies preferred) into ``net``.

    Only names in ``net.parameters_dict()`` count, so optimizer state and metadata saved by a
    training run are ignored. With ``allow_new_head`` a classifier (prefix
    ``net.classifier_name``, default ``fc``) that is missing or shaped differently keeps its
    initialisation and is logged (fine-tuning on new classes); otherwise, and for any other
    parameter, a mismatch raises :class:`UserError`.
    """
    load_weights(net, read_checkpoint(path)[0], path, model_name, allow_new_head=allow_new_head)


def load_weights(net: ms.nn.Cell, params: Dict[str, Any], path: str, model_name: Optional[str] = None, *,
                 allow_new_head: bool = True) -> None:
    """:func:`load_pretrained` with the checkpoint ``path`` already read into ``params``."""
    saved = model_weights(params)
    own = net.parameters_dict()
    head = getattr(net, "classifier_name", "fc") + "."
    model = f"model {model_name!r}" if model_name is not None else "the model"
    problems: List[str] = []
    head_mismatch = False
    for name, param in own.items():
        value = saved.get(name)
        if value is None or tuple(value.shape) != tuple(param.shape):
            found = ("missing" if value is None
                     else f"checkpoint {tuple(value.shape)} vs model {tuple(param.shape)}")
            if allow_new_head and name.startswith(head):
                head_mismatch = True
            else:
                problems.append(f"{name} ({found})")
    if problems:
        more = f" and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
        only_head = all(problem.startswith(head) for problem in problems)
        culprit = ("model.num_classes" if only_head else
                   "model.name and model.kwargs (the network's shape: layers, widths, vocabulary)")
        raise UserError(f"checkpoint {path} does not fit {model}: {', '.join(problems[:SHOWN])}{more}; "
                        f"check {culprit} against the run that wrote it")
    if head_mismatch:
        log.warning("classifier %s* of %s not loaded from %s (missing or different number of classes);"
                    " it keeps its fresh initialisation", head, model, path)
    # A dropped classifier is "loaded" from itself: a no-op that keeps MindSpore from warning again.
    keep = {name: param if head_mismatch and name.startswith(head) else saved[name]
            for name, param in own.items()}
    ms.load_param_into_net(net, keep, strict_load=True)


def read_torch_state(src: str) -> Dict[str, np.ndarray]:
    """A torch state dict as numpy arrays; ``{"model": ...}`` / ``{"state_dict": ...}`` are unwrapped."""
    if not os.path.isfile(src):
        raise UserError(f"weights file {src} not found; check the path")
    ext = os.path.splitext(src)[1].lower()
    if ext == ".safetensors":
        from safetensors.numpy import load_file

        return guarded(src, lambda: load_file(src))
    if ext not in (".pth", ".pt", ".bin"):
        raise UserError(f"weights file {src} must end in .pth, .pt, .bin or .safetensors")
    try:
        import torch
    except ImportError as exc:
        raise UserError(f"reading {src} needs PyTorch (pip install torch), "
                        "or convert from a .safetensors file instead") from exc
    state = guarded(src, lambda: torch.load(src, map_location="cpu", weights_only=True))
    state = unwrap_state(state)
    if not isinstance(state, dict):
        raise UserError(f"weights file {src} holds a {type(state).__name__}, not a state dict")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items() if isinstance(v, torch.Tensor)}


def unwrap_state(state: object) -> object:
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def guarded(src: str, read: Callable[[], T]) -> T:
    """Run ``read()``; any failure to parse becomes a one-line UserError naming ``src``."""
    try:
        return read()
    except Exception as exc:  # torch/safetensors raise many unrelated types for a bad file
        first = (str(exc).splitlines() or [""])[0]
        raise UserError(f"weights file {src} cannot be read (corrupt or not a state dict?): "
                        f"{type(exc).__name__}: {first}") from exc
