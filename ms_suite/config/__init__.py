"""Recipes: the typed schema and the YAML loader (inheritance, overrides, validation)."""
from ms_suite.config.loader import from_dict, load_config, save_config, to_dict
from ms_suite.config.schema import Config

__all__ = ["Config", "from_dict", "load_config", "save_config", "to_dict"]
