"""What every generated config class can do: become a dict, be read from one, and take changes."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, ClassVar, TypeVar

T = TypeVar("T", bound="ConfigBase")


def deep_merge(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``current`` with ``changes`` laid over it: nested dicts merge key by key, anything else replaces."""
    merged = copy.deepcopy(current)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def schema_module() -> Any:
    """core.schema, or None where jsonschema is not installed (a bare GPU image)."""
    try:
        from . import schema
    except ImportError:
        return None
    return schema


def check(kind: type[ConfigBase], values: dict[str, Any]) -> None:
    """Raise the schema's error for ``values`` as ``kind`` (the whole config, or one section checked at its
    place in it, so that the error's path is the same either way).

    Without jsonschema only unknown settings are refused; the defaults still come from the same schema
    (through the generated classes)."""
    schema = schema_module()
    if schema is not None:
        schema.validate("finetune-config", {kind.SECTION: values} if kind.SECTION else values)
        return
    sections = (
        {kind.SECTION: (kind, values)}
        if kind.SECTION
        else {
            f.name: (f.default_factory, values.get(f.name) or {})
            for f in dataclasses.fields(kind)  # type: ignore[arg-type]
            if f.name in values
        }
    )
    unknown_sections = sorted(set(values) - {f.name for f in dataclasses.fields(kind)}) if not kind.SECTION else []  # type: ignore[arg-type]
    if unknown_sections:
        raise ValueError(f"unknown config section(s) {', '.join(unknown_sections)}")
    for name, (section, given) in sections.items():
        unknown = sorted(set(given) - {f.name for f in dataclasses.fields(section)})  # type: ignore[arg-type]
        if unknown:
            raise ValueError(f"{name}: unknown setting(s) {', '.join(unknown)}")


class ConfigBase:
    """Frozen dataclasses made from the schema: validated once where they are made, then only read."""

    SECTION: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: nested sections as dicts, tuples as lists (what the comm and the run files hold)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, ConfigBase):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls: type[T], values: dict[str, Any] | None = None, *, validate: bool = True) -> T:
        """Validated against the schema (the first broken rule, by path, is the error); defaults fill the rest."""
        values = {} if values is None else values
        if validate:
            check(cls, values)
        return cls._build(values)

    @classmethod
    def _build(cls: type[T], values: dict[str, Any]) -> T:
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name not in values:
                continue
            value = values[f.name]
            kind = f.default_factory if f.default_factory is not dataclasses.MISSING else None
            if isinstance(kind, type) and issubclass(kind, ConfigBase):
                value = kind._build(value or {})
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)

    def merged(self: T, changes: dict[str, Any] | None) -> T:
        """A new config with ``changes`` (a partial dict) laid over this one, validated as a whole."""
        if not changes:
            return self
        return type(self).from_dict(deep_merge(self.to_dict(), changes))

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style reads, so code written for the dict form keeps working on the typed one."""
        return getattr(self, key, default)

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None
