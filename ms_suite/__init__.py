"""ms-suite: train, compress, profile and deploy MindSpore models from YAML recipes.

The Python API is :mod:`ms_suite.api` (``train``, ``evaluate``, ``export``, ``compress``, ``tune``);
``create_model`` and ``list_models`` are the model zoo's.
"""
from ms_suite.version import __version__  # first: sets the suite's import time

from ms_suite.models import create_model, list_models  # noqa: E402

__all__ = ["__version__", "create_model", "list_models"]
