"""Validation against the JSON Schemas in the repository's ``schema/`` folder.

The schemas are the one contract between the kernel and the browser. This module and
``@oss-finetune/schema`` (TypeScript) describe a broken rule identically: the same path
(``lora.r``), the same words (``must be >= 1``) and the same order, so the first error a person
sees does not depend on which side checked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Union

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from .errors import UserError

Segment = Union[str, int]

NAMES = ("finetune-config", "harmony-tokens", "training-run", "dataset-summary", "comm-message", "runs-comparison")


def schema_dir() -> Path:
    """A source checkout reads the repository's folder (never a stale copy); a wheel carries its own."""
    checkout = Path(__file__).resolve().parents[3] / "schema"
    if (checkout / "finetune-config.schema.json").is_file():
        return checkout
    packaged = Path(__file__).resolve().parents[1] / "schema"
    if (packaged / "finetune-config.schema.json").is_file():
        return packaged
    raise FileNotFoundError(
        "The JSON Schemas are missing from this installation of oss_finetune. "
        "Reinstall it with `pip install ./python`, or run `npm run build:python-assets` in a checkout."
    )


@cache
def load_schema(name: str) -> dict[str, Any]:
    if name not in NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(NAMES)}")
    loaded: dict[str, Any] = json.loads((schema_dir() / f"{name}.schema.json").read_text(encoding="utf-8"))
    return loaded


@cache
def mime_types() -> dict[str, str]:
    """Schema name -> MIME type of the payload, e.g. harmony-tokens -> application/vnd.oss-finetune.harmony+json."""
    types: dict[str, str] = json.loads((schema_dir() / "mime-types.json").read_text(encoding="utf-8"))
    return types


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@dataclass(frozen=True)
class SchemaIssue:
    segments: tuple[Segment, ...]
    keyword: str
    message: str

    @property
    def path(self) -> str:
        return format_path(self.segments)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SchemaError(UserError, ValueError):
    """An instance broke its schema. ``str()`` names the first rule, e.g. ``lora.r: must be >= 1``."""

    def __init__(self, schema: str, issues: list[SchemaIssue]):
        self.schema = schema
        self.issues = issues
        first = issues[0]
        self.path = first.path
        self.keyword = first.keyword
        self.message = first.message
        super().__init__(str(first))


def format_path(segments: Iterable[Segment]) -> str:
    out = ""
    for segment in segments:
        if isinstance(segment, int):
            out += f"[{segment}]"
        else:
            out += f".{segment}" if out else segment
    return out or "(root)"


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _describe(keyword: str, rule: Any) -> str:
    if keyword == "type":
        return "must be " + " or ".join(rule if isinstance(rule, list) else [rule])
    limits = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if keyword in limits:
        return f"must be {limits[keyword]} {_number(rule)}"
    if keyword == "enum":
        return "must be one of: " + ", ".join(_show(v) for v in rule)
    if keyword == "const":
        return f"must be equal to {_show(rule)}"
    if keyword in ("minLength", "maxLength"):
        return f"must have at {'least' if keyword == 'minLength' else 'most'} {rule} characters"
    if keyword in ("minItems", "maxItems"):
        return f"must have at {'least' if keyword == 'minItems' else 'most'} {rule} items"
    if keyword == "uniqueItems":
        return "must not contain duplicate items"
    if keyword == "pattern":
        return f"must match pattern {rule}"
    return f"is invalid ({keyword})"


def _issues_of(error: ValidationError) -> list[SchemaIssue]:
    base = tuple(error.absolute_path)
    # jsonschema leaves these unset only on errors it did not raise from a validator; ours always are.
    keyword = str(error.validator)
    rule: Any = error.validator_value
    instance: Any = error.instance
    holder: Any = error.schema
    if keyword == "required":
        # jsonschema reports the holder; the missing field is the last quoted name in its message.
        missing = [name for name in rule if name not in instance]
        return [
            SchemaIssue(base + (name,), keyword, "is required") for name in missing if f"'{name}'" in error.message
        ] or [SchemaIssue(base + (name,), keyword, "is required") for name in missing]
    if keyword == "additionalProperties" and rule is False:
        known = set(holder.get("properties", {}))
        extra = [key for key in instance if key not in known]
        return [SchemaIssue(base + (key,), keyword, "is not an allowed field") for key in extra]
    return [SchemaIssue(base, keyword, _describe(keyword, rule))]


def _segment_key(segments: tuple[Segment, ...]) -> tuple[tuple[int, int | str, str], ...]:
    # Indices sort numerically and before names, names by code point, a parent before its children.
    return tuple((0, s, "") if isinstance(s, int) else (1, 0, s) for s in segments)


def _non_finite(value: Any, at: tuple[Segment, ...]) -> list[tuple[Segment, ...]]:
    if isinstance(value, float):
        return [] if math.isfinite(value) else [at]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _non_finite(item, (*at, key))]
    if isinstance(value, (list, tuple)):
        return [found for i, item in enumerate(value) for found in _non_finite(item, (*at, i))]
    return []


def schema_issues(name: str, instance: Any) -> list[SchemaIssue]:
    """Every broken rule of ``instance`` against schema ``name``, in the order shared with TypeScript."""
    found: dict[tuple[tuple[Segment, ...], str, str], SchemaIssue] = {}
    # JSON has no NaN or infinity, and a range check (nan >= 0 is false, so is nan < 0) lets them through.
    for segments in _non_finite(instance, ()):
        issue = SchemaIssue(segments, "finite", "must be a finite number")
        found[(issue.segments, issue.keyword, issue.message)] = issue
    for error in _validator(name).iter_errors(instance):
        for issue in _issues_of(error):
            found.setdefault((issue.segments, issue.keyword, issue.message), issue)
    return sorted(found.values(), key=lambda i: (_segment_key(i.segments), i.keyword, i.message))


def validate(name: str, instance: Any) -> Any:
    """Return ``instance`` unchanged, or raise SchemaError naming the first broken rule."""
    issues = schema_issues(name, instance)
    if issues:
        raise SchemaError(name, issues)
    return instance
