"""The fine-tune config, typed: frozen dataclasses generated from schema/finetune-config.schema.json.

A config is validated once, where it enters (a magic, a comm message, the session, a job file, the
tutorial), by ``FinetuneConfig.from_dict`` or a section's ``from_dict``; after that it is only read.
``merged(changes)`` lays a partial dict over a config and validates the result. The defaults and
the help text of every field come from the schema, through config_types.py (regenerate it with
``python schema/scripts/gen_python.py``; a test fails when it is stale).
"""

from __future__ import annotations

from typing import Any

from ._config_base import ConfigBase, deep_merge
from .config_types import SECTIONS, DataConfig, FinetuneConfig, LoraConfig, ModelConfig, TrainingConfig

__all__ = [
    "SECTIONS",
    "ConfigBase",
    "DataConfig",
    "FinetuneConfig",
    "LoraConfig",
    "ModelConfig",
    "TrainingConfig",
    "deep_merge",
    "section",
    "section_dict",
    "with_defaults",
]


def section(name: str, values: ConfigBase | dict[str, Any] | None) -> ConfigBase:
    """One section, typed: an already typed one as is (it was validated when made), a dict validated."""
    kind = SECTIONS[name]
    if isinstance(values, kind):
        return values
    if isinstance(values, ConfigBase):
        raise TypeError(f"expected the {name} section, got {type(values).__name__}")
    return kind.from_dict(values or {})


def section_dict(name: str, values: ConfigBase | dict[str, Any] | None) -> dict[str, Any]:
    """One section as a dict with every default filled in, validated."""
    return section(name, values).to_dict()


def with_defaults(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """A (partial) fine-tune config validated, as a full dict with every default filled in."""
    return FinetuneConfig.from_dict(config or {}).to_dict()
