"""Models that need no hub, found by name: the registry that ``load_model`` and the memory planner ask.

A hub id or a local folder is loaded by transformers; a name with the ``embedded:`` prefix is looked
up here. A package adds its models with one ``register`` call, as peft's tuners join peft: the
offline default does so in ``oss_finetune.embedded`` (imported by the notebook layer, the command line
and the ranks torchrun starts), so this layer never names a model of a layer above it.

This module imports nothing heavy: registering costs nothing until a model is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

PREFIX = "embedded:"


@dataclass(frozen=True)
class ModelSource:
    """One model that is built rather than downloaded.

    build(dtype=, device=, attn_implementation=, mxfp4_experts=) returns the GptOssForCausalLM;
    architecture() returns its GptOssConfig without building it (the memory planner's input).
    full_size: the real gpt-oss architecture, built in bf16 on a GPU only; the others are CPU-sized.
    """

    name: str
    summary: str
    build: Callable[..., Any]
    architecture: Callable[[], Any]
    full_size: bool = False


_SOURCES: dict[str, ModelSource] = {}


def register(source: ModelSource) -> ModelSource:
    if not source.name.startswith(PREFIX):
        raise ValueError(f"a model source's name starts with {PREFIX!r}: {source.name!r}")
    _SOURCES[source.name] = source
    return source


def is_embedded(name: str | None) -> bool:
    """Whether ``name`` names a built model (registered or not) rather than a hub id or a folder."""
    return bool(name) and str(name).startswith(PREFIX)


def names() -> tuple[str, ...]:
    return tuple(_SOURCES)


def find(name: str) -> ModelSource | None:
    return _SOURCES.get(name)


def source_for(name: str) -> ModelSource:
    """The registered source of ``name``; an error that lists the known ones otherwise."""
    source = _SOURCES.get(name)
    if source is not None:
        return source
    if not _SOURCES:
        raise LookupError(
            f"{name} is not registered: no embedded models are. `import oss_finetune.embedded` registers them "
            "(the notebook extension and the command line do this themselves)."
        )
    raise LookupError(f"unknown embedded model {name!r}; the embedded models are {', '.join(_SOURCES)}")
