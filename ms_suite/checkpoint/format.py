"""The training-checkpoint format: MindSpore's ``.ckpt`` plus a JSON metadata string under :data:`META_KEY`
(epoch, step, best metric, RNG state, the model configuration), read with one-line errors for bad files."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Tuple

import mindspore as ms

from ms_suite.errors import UserError
from ms_suite.runtime import captured_native_output

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
