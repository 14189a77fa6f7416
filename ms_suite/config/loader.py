"""Load a recipe: merge its ``base:`` files, apply ``--set`` overrides, validate against the schema.

Every value remembers the file (or ``--set``) it came from, so an error can say where to fix it.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from typing import Any, Dict, Iterable, List, Tuple

import yaml

from ms_suite.config.schema import Config
from ms_suite.errors import UserError

Sources = Dict[str, str]  # dotted key -> file or "--set" that set it


def load_config(path: str, overrides: Iterable[str] = ()) -> Config:
    """Resolve ``path`` (with its bases) and ``overrides`` (``a.b=value``) into a validated Config."""
    raw, sources = _load_with_bases(os.path.abspath(path), stack=())
    for item in overrides:
        key, value = _parse_override(item)
        _set_dotted(raw, key, value)
        sources[key] = "--set"
    raw["base"] = []  # bases are resolved; the saved config is self-contained
    return from_dict(raw, sources, default_source=path)


def from_dict(raw: Dict[str, Any], sources: Sources | None = None, default_source: str = "config") -> Config:
    """Validate a plain nested dict into a Config (unknown keys and bad values are UserErrors)."""
    return _build(Config, raw, "", sources or {}, default_source)


def to_dict(cfg: Any) -> Dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str) -> None:
    with open(path, "w") as fh:
        yaml.safe_dump(to_dict(cfg), fh, sort_keys=False)


# ---------------------------------------------------------------- reading files

def _read_yaml(path: str) -> Dict[str, Any]:
    if not os.path.isfile(path):
        raise UserError(f"config file not found: {os.path.relpath(path)}")
    try:
        with open(path) as fh:
            data = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a mapping of sections, got {type(data).__name__}")
    return data


def _load_with_bases(path: str, stack: Tuple[str, ...]) -> Tuple[Dict[str, Any], Sources]:
    if path in stack:
        raise UserError(f"{path}: circular `base:` chain ({' -> '.join(stack + (path,))})")
    data = _read_yaml(path)
    bases = data.pop("base", []) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: Dict[str, Any] = {}
    sources: Sources = {}
    for base in bases:
        base_path = os.path.normpath(os.path.join(os.path.dirname(path), base))
        base_raw, base_sources = _load_with_bases(base_path, stack + (path,))
        _merge(merged, base_raw)
        sources.update(base_sources)
    _merge(merged, data)
    sources.update({key: os.path.relpath(path) for key in _dotted_keys(data)})
    return merged, sources


def _merge(dst: Dict[str, Any], src: Dict[str, Any]) -> None:
    """Deep-merge ``src`` into ``dst``; mappings merge, everything else replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value)
        else:
            dst[key] = value


def _dotted_keys(data: Dict[str, Any], prefix: str = "") -> List[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        keys.append(dotted)
        if isinstance(value, dict):
            keys.extend(_dotted_keys(value, dotted + "."))
    return keys


def _parse_override(item: str) -> Tuple[str, Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.epochs=90")
    key, text = item.split("=", 1)
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def _set_dotted(raw: Dict[str, Any], key: str, value: Any) -> None:
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if not isinstance(node.setdefault(part, {}), dict):
            raise UserError(f"--set {key}: {part!r} is not a section")
        node = node[part]
    node[parts[-1]] = value


# ---------------------------------------------------------------- validation

def _build(cls: type, raw: Any, prefix: str, sources: Sources, default_source: str) -> Any:
    where = prefix.rstrip(".") or "the recipe"
    if not isinstance(raw, dict):
        raise UserError(f"{_source(sources, where, default_source)}: `{where}` must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            dotted = prefix + key
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean `{prefix}{close[0]}`?" if close else ""
            raise UserError(f"{_source(sources, dotted, default_source)}: unknown key `{dotted}`{hint}")
    values = {}
    for name, field in fields.items():
        if name not in raw:
            continue
        dotted = prefix + name
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, raw[name], dotted + ".", sources, default_source)
        else:
            values[name] = _coerce(raw[name], tp, dotted, field.metadata, sources, default_source)
    return cls(**values)


def _source(sources: Sources, dotted: str, default: str) -> str:
    return sources.get(dotted, default)


def _coerce(value: Any, tp: Any, dotted: str, meta: Any, sources: Sources, default_source: str) -> Any:
    def fail(expected: str) -> UserError:
        src = _source(sources, dotted, default_source)
        return UserError(f"{src}: `{dotted}` = {value!r} is invalid: expected {expected}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        tp = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Literal:
        if value not in args:
            raise fail("one of " + ", ".join(map(str, args)))
        return value
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise fail(f"a list of {args[0].__name__}")
        return [_coerce(v, args[0], dotted, {}, sources, default_source) for v in value]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise fail("a mapping")
        return dict(value)
    value = _check_bounds(_scalar(value, tp, fail), meta, fail)
    registry = meta.get("registry")
    if registry is not None and value not in registry:
        raise UserError(f"{_source(sources, dotted, default_source)}: `{dotted}`: {registry.unknown(value)}")
    return value


def _scalar(value: Any, tp: type, fail) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail("true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool):
            raise fail("a number")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise fail("a number") from None
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise fail("a string")
        return str(value)
    return value


def _check_bounds(value: Any, meta: Any, fail) -> Any:
    checks = {"ge": (lambda v, b: v >= b, ">="), "gt": (lambda v, b: v > b, ">"),
              "le": (lambda v, b: v <= b, "<="), "lt": (lambda v, b: v < b, "<")}
    for key, (ok, symbol) in checks.items():
        if key in meta and not ok(value, meta[key]):
            raise fail(f"a value {symbol} {meta[key]}")
    return value
