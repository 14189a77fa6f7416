"""Parameter count and forward FLOPs of registered models, keyed on each model family's source.

The figures of the zoo as released ship in ``zoo_stats.json`` beside this file (``make zoo-stats``
writes it), so ``ms-suite list`` measures nothing on a fresh install. A model whose family source
has changed since is measured once and kept in the user's cache.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
from typing import Dict

from ms_suite.models.flops import measure_model
from ms_suite.models.registry import list_models, model_builder, model_info
from ms_suite.runtime.device import default_cache_dir

log = logging.getLogger("ms_suite")

SHIPPED_STATS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo_stats.json")


def stats_cache_file() -> str:
    return os.path.join(default_cache_dir(), "zoo_stats.json")


def model_stats(name: str) -> Dict[str, float]:
    """Parameter count and forward FLOPs at the default input size: shipped, cached, or measured."""
    key = stats_key(name)
    shipped = _shipped_stats()
    if key in shipped:
        return shipped[key]
    cache_file = stats_cache_file()
    cache = _read_cache(cache_file)
    if key not in cache:
        log.info("measuring %s at %s (once; cached in %s)", name, "x".join(map(str, model_info(name).input_size)),
                 cache_file)
        cache[key] = measure_model(name)
        _write(cache_file, cache)
    return cache[key]


def stats_key(name: str) -> str:
    return f"{name}:{family_digest(name)}"


def write_zoo_stats(path: str = SHIPPED_STATS) -> str:
    """Write the statistics of every registered model, for its current source, to ``path``."""
    _write(path, {stats_key(name): model_stats(name) for name in list_models()})
    return path


def family_digest(name: str) -> str:
    """A digest of the source of ``name``'s family: its file, or every file of its folder."""
    return _source_digest(inspect.getsourcefile(model_builder(name)))


@functools.lru_cache(maxsize=None)
def _source_digest(path: str) -> str:
    """Read once per process: every model of a family shares its file."""
    files = [path]
    if os.path.basename(path) == "__init__.py":
        folder = os.path.dirname(path)
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))
    digest = hashlib.sha1()
    for file in files:
        with open(file, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def _shipped_stats() -> Dict[str, Dict[str, float]]:
    return _read_cache(SHIPPED_STATS)


def _write(path: str, stats: Dict[str, Dict[str, float]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as fh:
        json.dump(stats, fh, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def _read_cache(path: str) -> Dict[str, Dict[str, float]]:
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)
