"""The offline default: the models and the sample that need no hub, registered with the layers below.

Importing this package is cheap (no torch): it registers the four embedded models with
``modeling.sources``; a model is built only when it is loaded. The English-reasoning base and its
build live in ``embedded.base`` (``python -m oss_finetune.embedded build``); the names that module
defines are also reachable from here, imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ..core.tokenizer import EMBEDDED as EMBEDDED_TINY
from ..modeling import sources

# The tiny model trained once to write Harmony and reason in English; built and cached by embedded.base.
EMBEDDED_TINY_BASE = "embedded:tiny-base"
# The real architecture at full size with random weights: a GPU smoke test of the whole path.
EMBEDDED_RANDOM_20B = "embedded:gpt-oss-20b-random"
EMBEDDED_RANDOM_120B = "embedded:gpt-oss-120b-random"
EMBEDDED_RANDOM = (EMBEDDED_RANDOM_20B, EMBEDDED_RANDOM_120B)
EMBEDDED_NAMES = (EMBEDDED_TINY, EMBEDDED_TINY_BASE, *EMBEDDED_RANDOM)


def _tiny(**options: Any):
    from ..modeling.model import build_tiny

    return build_tiny(**options)


def _tiny_base(*, mxfp4_experts: bool = False, **options: Any):
    from .base import load_base

    return load_base(**options)


def _random(name: str, big: bool):
    def build(**options: Any):
        from ..modeling.model import build_random

        return build_random(name, big=big, **options)

    return build


def _architecture(kind: str):
    def architecture():
        from ..modeling import model

        return {"tiny": model.tiny_config, "20b": model.gpt_oss_20b_config, "120b": model.gpt_oss_120b_config}[kind]()

    return architecture


for _source in (
    sources.ModelSource(EMBEDDED_TINY, "the tiny GPT-OSS, seeded random weights", _tiny, _architecture("tiny")),
    sources.ModelSource(
        EMBEDDED_TINY_BASE,
        "the tiny GPT-OSS trained once on English reasoning (cached)",
        _tiny_base,
        _architecture("tiny"),
    ),
    sources.ModelSource(
        EMBEDDED_RANDOM_20B,
        "gpt-oss-20b's architecture, random bf16 weights, on a GPU",
        _random(EMBEDDED_RANDOM_20B, False),
        _architecture("20b"),
        full_size=True,
    ),
    sources.ModelSource(
        EMBEDDED_RANDOM_120B,
        "gpt-oss-120b's architecture, random weights, MXFP4 experts, on a GPU",
        _random(EMBEDDED_RANDOM_120B, True),
        _architecture("120b"),
        full_size=True,
    ),
):
    sources.register(_source)


def __getattr__(name: str) -> Any:
    # `from oss_finetune.embedded import TUTORIAL_SETTINGS` keeps working without importing torch on
    # `import oss_finetune.embedded`.
    if name.startswith("__"):
        raise AttributeError(name)
    base = importlib.import_module(f"{__name__}.base")
    try:
        return getattr(base, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
