"""ms-suite: train, compress, profile and deploy MindSpore models from YAML recipes.

The Python API is :mod:`ms_suite.api` (``train``, ``evaluate``, ``export``, ``compress``, ``tune``);
``create_model`` and ``list_models`` are the model zoo's. Importing the package itself loads no
framework: ``python -m ms_suite`` imports it before the command line is known, and MindSpore reads
the entry script's path when it is first imported.
"""
from typing import Any

from ms_suite.version import __version__  # first: sets the suite's import time

__all__ = ["__version__", "create_model", "list_models"]


def __getattr__(name: str) -> Any:
    """``ms_suite.create_model`` / ``ms_suite.list_models``, imported on first use."""
    if name in ("create_model", "list_models"):
        from ms_suite import models

        return getattr(models, name)
    raise AttributeError(f"module 'ms_suite' has no attribute {name!r}")
