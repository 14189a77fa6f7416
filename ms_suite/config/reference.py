"""The config-key reference (docs/reference/config.md), generated from the schema."""
from __future__ import annotations

import dataclasses
import typing
from typing import List

import yaml

from ms_suite.config.schema import Config

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def _type_name(tp) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return _type_name(inner[0]) + " or null"
    if origin is typing.Literal:
        return " \\| ".join(map(str, args))
    if origin in (list, List):
        return f"list of {_type_name(args[0])}"
    if origin in (dict, typing.Dict):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _registry_names(meta) -> str:
    """The names a registry-checked key accepts (models: a pointer to the zoo, which is long)."""
    registry = meta.get("registry")
    if registry is None:
        return ""
    if registry.hint:
        return f"{registry.kind} name ({registry.hint})"
    return " \\| ".join(registry.names())


def _bounds(meta) -> str:
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{symbols[k]} {meta[k]}" for k in symbols if k in meta)


def _default(field: dataclasses.Field) -> str:
    """The default as it would be written in YAML (true, null, [0.9, 0.999], ...)."""
    has_factory = field.default_factory is not dataclasses.MISSING  # type: ignore[misc]
    value = field.default_factory() if has_factory else field.default  # type: ignore[misc]
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("...").strip()


def _rows(cls: type, prefix: str) -> List[str]:
    """Table rows for a section; nested sections (e.g. ``compression.simqat``) are flattened."""
    rows = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        key, tp = f"{prefix}.{field.name}", hints[field.name]
        if dataclasses.is_dataclass(tp):
            rows += _rows(tp, key)
            continue
        kind = _registry_names(field.metadata) or _type_name(tp)
        bounds = _bounds(field.metadata)
        kind += f" ({bounds})" if bounds else ""
        rows.append(f"| `{key}` | {kind} | `{_default(field)}` | {field.metadata.get('doc', '')} |")
    return rows


def markdown_reference() -> str:
    """One table per section: key, type (with bounds), default, meaning."""
    lines = [START]
    top_hints = typing.get_type_hints(Config)
    for section in dataclasses.fields(Config):
        cls = top_hints[section.name]
        if not dataclasses.is_dataclass(cls):
            lines += ["", f"`{section.name}` ({_type_name(cls)}): {section.metadata.get('doc', '')}"]
            continue
        lines += ["", f"**{section.name}**", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        lines += _rows(cls, section.name)
    lines.append(END)
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_reference())
