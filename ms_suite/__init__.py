"""ms-suite: train, compress, profile and deploy MindSpore models from YAML recipes."""
import time

START_TIME = time.time()  # for time-to-first-step; set when the suite is first imported
__version__ = "0.1.0"

from ms_suite.models.registry import create_model, list_models  # noqa: E402

__all__ = ["__version__", "create_model", "list_models"]
