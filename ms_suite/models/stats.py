"""Parameter count and forward FLOPs of registered models, cached on disk per model source."""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from typing import Dict

from ms_suite.models.flops import measure_model
from ms_suite.models.registry import model_builder, model_info
from ms_suite.runtime.device import default_cache_dir

log = logging.getLogger("ms_suite")


def stats_cache_file() -> str:
    return os.path.join(default_cache_dir(), "zoo_stats.json")


def model_stats(name: str) -> Dict[str, float]:
    """Parameter count and forward FLOPs at the default input size (cached per model source)."""
    info = model_info(name)
    key = f"{name}:{family_digest(name)}"
    cache_file = stats_cache_file()
    cache = _read_cache(cache_file)
    if key not in cache:
        log.info("measuring %s at %s (once; cached in %s)", name, "x".join(map(str, info.input_size)), cache_file)
        cache[key] = measure_model(name)
        os.makedirs(os.path.dirname(cache_file), exist_ok=True)
        with open(cache_file + ".tmp", "w") as fh:
            json.dump(cache, fh)
        os.replace(cache_file + ".tmp", cache_file)
    return cache[key]


def family_digest(name: str) -> str:
    """A digest of the source of ``name``'s family: its file, or every file of its folder."""
    path = inspect.getsourcefile(model_builder(name))
    files = [path]
    if os.path.basename(path) == "__init__.py":
        folder = os.path.dirname(path)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))
    digest = hashlib.sha1()
    for file in files:
        with open(file, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:12]


def _read_cache(path: str) -> Dict[str, Dict[str, float]]:
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)
