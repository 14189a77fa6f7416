"""Pretrained weights: load MindSpore checkpoints into a model, convert torchvision ResNets."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import mindspore as ms
import numpy as np

from ms_suite.errors import UserError
from ms_suite.models.registry import ModelInfo, create_model
from ms_suite.runtime import captured_native_output

log = logging.getLogger("ms_suite")
T = TypeVar("T")

_SHOWN = 5  # how many offending names an error lists
_BN_RENAMES = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
               "running_var": "moving_variance"}


META_KEY = "ms_suite_meta"  # JSON metadata string saved inside training checkpoints


def read_checkpoint(path: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Load ``path`` into (parameters, metadata); a missing or corrupt file is a UserError."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint {path} not found; check the path")
    size = os.path.getsize(path)
    if size == 0:
        raise UserError(f"checkpoint {path} cannot be read: the file is empty; pick another checkpoint")
    # MindSpore logs its own misleading "[ERROR] ... May not have permission" line before raising.
    with captured_native_output():
        try:
            params = ms.load_checkpoint(path, crc_check=True)
        except (ValueError, RuntimeError, OSError):
            params = None
    if params is None:
        raise UserError(f"checkpoint {path} cannot be read: corrupt or truncated ({size} bytes fail to parse "
                        "or fail the CRC check); pick another checkpoint")
    meta_text = params.pop(META_KEY, None)
    meta = json.loads(meta_text) if isinstance(meta_text, str) else {}
    return params, meta


def read_checkpoint_meta(path: str) -> Dict[str, Any]:
    """Only the metadata of checkpoint ``path`` (no tensors are loaded); {} when it has none or
    cannot be read (:func:`read_checkpoint` reports a bad file when the weights are loaded)."""
    with captured_native_output():
        try:
            text = ms.load_checkpoint(path, choice_func=lambda name: name == META_KEY).get(META_KEY)
        except (ValueError, RuntimeError, OSError):
            return {}
    return json.loads(text) if isinstance(text, str) else {}


def model_weights(params: Dict[str, Any]) -> Dict[str, Any]:
    """The model's weights from a training checkpoint, preferring its EMA copies when present."""
    ema = {name[len("ema."):]: value for name, value in params.items() if name.startswith("ema.")}
    return {**params, **ema}


def load_pretrained(net: ms.nn.Cell, path: str, info: Optional[ModelInfo] = None, *,
                    allow_new_head: bool = True) -> None:
    """Load the model weights in ``path`` (EMA copies preferred) into ``net``.

    Only names in ``net.parameters_dict()`` count, so optimizer state and metadata saved by a
    training run are ignored. With ``allow_new_head`` a classifier (prefix
    ``net.classifier_name``, default ``fc``) that is missing or shaped differently keeps its
    initialisation and is logged (fine-tuning on new classes); otherwise, and for any other
    parameter, a mismatch raises :class:`UserError`.
    """
    load_weights(net, read_checkpoint(path)[0], path, info, allow_new_head=allow_new_head)


def load_weights(net: ms.nn.Cell, params: Dict[str, Any], path: str, info: Optional[ModelInfo] = None, *,
                 allow_new_head: bool = True) -> None:
    """:func:`load_pretrained` with the checkpoint ``path`` already read into ``params``."""
    saved = model_weights(params)
    own = net.parameters_dict()
    head = getattr(net, "classifier_name", "fc") + "."
    model = f"model {info.name!r}" if info is not None else "the model"
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
        more = f" and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        only_head = all(problem.startswith(head) for problem in problems)
        culprit = ("model.num_classes" if only_head else
                   "model.name and model.kwargs (the network's shape: layers, widths, vocabulary)")
        raise UserError(f"checkpoint {path} does not fit {model}: {', '.join(problems[:_SHOWN])}{more}; "
                        f"check {culprit} against the run that wrote it")
    if head_mismatch:
        log.warning("classifier %s* of %s not loaded from %s (missing or different number of classes);"
                    " it keeps its fresh initialisation", head, model, path)
    # A dropped classifier is "loaded" from itself: a no-op that keeps MindSpore from warning again.
    keep = {name: param if head_mismatch and name.startswith(head) else saved[name]
            for name, param in own.items()}
    ms.load_param_into_net(net, keep, strict_load=True)


def convert_torchvision_resnet(src: str, dst: str, arch: str) -> dict:
    """Convert a torchvision ResNet state dict (``.pth``/``.pt``/``.safetensors``) to a MindSpore ``.ckpt``.

    Every tensor is checked by name and shape against ``create_model(arch)`` before ``dst`` is
    written. Returns ``{"num_params", "num_classes", "arch"}`` (trainable parameter count).
    """
    state = _read_torch_state(src)
    if "fc.weight" not in state:
        raise UserError(f"{src} has no 'fc.weight'; expected a torchvision ResNet state dict")
    num_classes = int(state["fc.weight"].shape[0])
    net = create_model(arch, num_classes=num_classes)
    own = {name: tuple(p.shape) for name, p in net.parameters_dict().items()}
    hint = f"is {arch!r} the right architecture?"
    entries = []
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        name = _ms_name(key, own)
        if name not in own:
            raise UserError(f"{src}: tensor {key!r} has no counterpart in {arch}; {hint}")
        if tuple(value.shape) != own[name]:
            raise UserError(f"{src}: tensor {key!r} has shape {tuple(value.shape)} but {arch} expects "
                            f"{own[name]}; {hint}")
        entries.append({"name": name, "data": ms.Tensor(value.astype(np.float32))})
    missing = sorted(set(own) - {e["name"] for e in entries})
    if missing:
        raise UserError(f"{src} lacks {len(missing)} tensors {arch} needs, e.g. {missing[:_SHOWN]}; {hint}")
    ms.save_checkpoint(entries, dst)
    num_params = sum(p.size for p in net.trainable_params())
    return {"num_params": int(num_params), "num_classes": num_classes, "arch": arch}


def _ms_name(key: str, own: Dict[str, tuple]) -> str:
    """torchvision name -> MindSpore name; BatchNorm tensors are renamed when the model says so."""
    prefix, _, leaf = key.rpartition(".")
    renamed = f"{prefix}.{_BN_RENAMES.get(leaf, leaf)}"
    return renamed if renamed in own else key


def _read_torch_state(src: str) -> Dict[str, np.ndarray]:
    """A torch state dict as numpy arrays; ``{"model": ...}`` / ``{"state_dict": ...}`` are unwrapped."""
    if not os.path.isfile(src):
        raise UserError(f"weights file {src} not found; check the path")
    ext = os.path.splitext(src)[1].lower()
    if ext == ".safetensors":
        from safetensors.numpy import load_file

        return _guarded(src, lambda: load_file(src))
    if ext not in (".pth", ".pt", ".bin"):
        raise UserError(f"weights file {src} must end in .pth, .pt, .bin or .safetensors")
    try:
        import torch
    except ImportError as exc:
        raise UserError(f"reading {src} needs PyTorch (pip install torch), "
                        "or convert from a .safetensors file instead") from exc
    state = _guarded(src, lambda: torch.load(src, map_location="cpu", weights_only=True))
    state = _unwrap(state)
    if not isinstance(state, dict):
        raise UserError(f"weights file {src} holds a {type(state).__name__}, not a state dict")
    return {k: v.detach().float().numpy() if v.is_floating_point() else v.numpy()
            for k, v in state.items() if isinstance(v, torch.Tensor)}


def _unwrap(state: object) -> object:
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            return state[key]
    return state


def _guarded(src: str, read: Callable[[], T]) -> T:
    """Run ``read()``; any failure to parse becomes a one-line UserError naming ``src``."""
    try:
        return read()
    except Exception as exc:  # torch/safetensors raise many unrelated types for a bad file
        first = (str(exc).splitlines() or [""])[0]
        raise UserError(f"weights file {src} cannot be read (corrupt or not a state dict?): "
                        f"{type(exc).__name__}: {first}") from exc
