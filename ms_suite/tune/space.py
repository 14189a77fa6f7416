"""The search space: a recipe's ``search_space`` entries, validated, as Optuna distributions.

Each entry maps a dotted recipe key to a distribution::

    search_space:
      train.lr: {type: float, low: 1.0e-3, high: 0.5, log: true}
      train.batch_size: {type: categorical, choices: [32, 64]}

Keys and values are checked by the recipe loader itself (a sampled point is just ``--set``
overrides), so a space can only produce recipes that ``ms-suite train`` would accept.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Sequence

import optuna
import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from ms_suite.config import Config, load_config, to_dict
from ms_suite.errors import UserError

FIELDS = {"float": ("low", "high", "log", "step"), "int": ("low", "high", "log", "step"),
          "categorical": ("choices",)}
REQUIRED = {"float": ("low", "high"), "int": ("low", "high"), "categorical": ("choices",)}
EXAMPLES = {"float": "{type: float, low: 1.0e-4, high: 0.1, log: true}",
            "int": "{type: int, low: 16, high: 128, step: 16}",
            "categorical": "{type: categorical, choices: [32, 64, 128]}"}
NOT_SEARCHABLE = ("base", "search_space", "tune")


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched recipe key and its Optuna distribution."""

    key: str
    distribution: BaseDistribution

    def suggest(self, trial: optuna.Trial) -> Any:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return trial.suggest_categorical(self.key, d.choices)
        if isinstance(d, IntDistribution):
            return trial.suggest_int(self.key, d.low, d.high, step=d.step, log=d.log)
        return trial.suggest_float(self.key, d.low, d.high, step=d.step, log=d.log)


def to_overrides(params: Dict[str, Any]) -> List[str]:
    """``--set`` strings for a point of the space: {"train.lr": 1e-05} -> ["train.lr=1.0e-05"]."""
    return [f"{key}={_yaml_text(value)}" for key, value in params.items()]


def _yaml_text(value: Any) -> str:
    """A scalar as YAML reads it back: 1e-05 -> '1.0e-05' (PyYAML reads '1e-05' as text), None -> 'null'."""
    return yaml.safe_dump(value).removesuffix("...\n").strip()


def parse_search_space(cfg: Config, recipe: str, overrides: Sequence[str] = ()) -> List[Param]:
    """Validate ``cfg.search_space`` (loaded from ``recipe`` with ``overrides``) into Params."""
    if not cfg.search_space:
        raise UserError(f"{recipe}: no `search_space` to tune; add one, e.g. search_space: "
                        f"{{train.lr: {EXAMPLES['float']}}}")
    recipe_values = to_dict(cfg)
    return [_parse_entry(key, spec, recipe, list(overrides), recipe_values) for key, spec in cfg.search_space.items()]


def grid_choices(params: Sequence[Param], recipe: str) -> Dict[str, List[Any]]:
    """The grid sampler's space: every entry must list its choices."""
    ranged = [p.key for p in params if not isinstance(p.distribution, CategoricalDistribution)]
    if ranged:
        raise UserError(f"{recipe}: tune.sampler grid needs every search_space entry as choices; give "
                        f"`{ranged[0]}` {{type: categorical, choices: [...]}} or use tune.sampler tpe/random")
    return {p.key: list(p.distribution.choices) for p in params}


def _parse_entry(key: str, spec: Any, recipe: str, overrides: List[str], recipe_values: Dict[str, Any]) -> Param:
    def fail(problem: str) -> UserError:
        return UserError(f"{recipe}: search_space `{key}`: {problem}")

    if key.split(".")[0] in NOT_SEARCHABLE:
        raise fail(f"`{key.split('.')[0]}` keys cannot be searched; search training keys such as train.lr")
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind not in FIELDS:
        raise fail(f"expected a mapping with type float, int or categorical, e.g. {EXAMPLES['float']}")
    fields = {k: v for k, v in spec.items() if k != "type"}
    unknown = sorted(set(fields) - set(FIELDS[kind]))
    missing = [k for k in REQUIRED[kind] if k not in fields]
    if unknown or missing:
        what = f"unknown field `{unknown[0]}`" if unknown else f"missing `{missing[0]}`"
        raise fail(f"{what} for type {kind} (fields: {', '.join(FIELDS[kind])}), e.g. {EXAMPLES[kind]}")
    try:
        distribution = _distribution(kind, fields)
    except (TypeError, ValueError) as err:
        raise fail(f"{err}; e.g. {EXAMPLES[kind]}") from None
    if isinstance(distribution, CategoricalDistribution):  # the loader's typed values (1e-5 in YAML is text)
        choices = [_check_value(key, choice, f"choice {choice!r}", kind, recipe, overrides, fail)
                   for choice in distribution.choices]
        return Param(key, CategoricalDistribution(choices))
    if isinstance(_value_or_none(recipe_values, key), str):
        raise fail(f"`{key}` is not a number; search it with {EXAMPLES['categorical']}")
    for bound in ("low", "high"):
        _check_value(key, getattr(distribution, bound), bound, kind, recipe, overrides, fail)
    return Param(key, distribution)


def _distribution(kind: str, fields: Dict[str, Any]) -> BaseDistribution:
    if kind == "categorical":
        choices = fields["choices"]
        if not isinstance(choices, list) or not choices:
            raise ValueError("`choices` must be a non-empty list")
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ValueError("each choice must be a number, text, true/false or null")
        return CategoricalDistribution(choices)
    log = fields.get("log", False)
    if not isinstance(log, bool):
        raise ValueError("`log` must be true or false")
    if kind == "int":
        if not all(isinstance(fields.get(k, 1), int) and not isinstance(fields.get(k), bool)
                   for k in ("low", "high", "step")):
            raise ValueError("`low`, `high` and `step` must be integers")
        return IntDistribution(fields["low"], fields["high"], log=log, step=fields.get("step", 1))
    step = fields.get("step")
    return FloatDistribution(_number(fields["low"], "low"), _number(fields["high"], "high"), log=log,
                             step=None if step is None else _number(step, "step"))


def _number(value: Any, name: str) -> float:
    """A float from YAML, where `1e-4` (no dot) arrives as text."""
    if isinstance(value, bool):
        raise ValueError(f"`{name}` must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number, got {value!r}") from None


def _check_value(key: str, value: Any, what: str, kind: str, recipe: str, overrides: List[str], fail) -> Any:
    """Load the recipe with ``key`` set to ``value``; return the value as the recipe types it."""
    try:
        cfg = load_config(recipe, overrides + to_overrides({key: value}))
    except UserError as err:
        raise fail(f"{what}: {str(err).removeprefix('--set: ')}") from None
    resolved = _get_dotted(to_dict(cfg), key)
    if kind != "categorical" and (isinstance(resolved, bool) or not isinstance(resolved, (int, float))):
        raise fail(f"`{key}` is not a number; search it with {EXAMPLES['categorical']}")
    return resolved


def _value_or_none(tree: Dict[str, Any], key: str) -> Any:
    """The recipe's own value of ``key`` (None when the schema has no such key)."""
    try:
        return _get_dotted(tree, key)
    except (KeyError, TypeError):
        return None


def _get_dotted(tree: Dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree
