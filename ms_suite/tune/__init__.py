"""Hyper-parameter search over any recipe with Optuna: samplers, pruners, resumable studies."""
from ms_suite.tune.report import record_cells, table_headers
from ms_suite.tune.space import Param, parse_search_space, to_overrides
from ms_suite.tune.tuner import Tuner

__all__ = ["Param", "Tuner", "parse_search_space", "record_cells", "table_headers", "to_overrides"]
