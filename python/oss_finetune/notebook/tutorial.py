"""The tutorial's settings and closing summary, shared by the notebook and its tests.

The notebook's parameters name a model and a data set; everything else has two sets of defaults:
the reference run for a hub model on a GPU, and a CPU-sized run for the embedded tiny GPT-OSS.
"""

from __future__ import annotations

import copy
from typing import Any

from ..core.config import with_defaults
from ..modeling import sources

# The reference workflow: LoRA r=8 on attention, 60 optimizer steps of 1 x 16 at lr 2e-4.
REFERENCE_SETTINGS: dict[str, Any] = {
    "data": {"max_seq_length": 2048, "overflow": "truncate", "loss_mask": "assistant", "reasoning_effort": "medium"},
    "lora": {
        "r": 8,
        "alpha": 16,
        "dropout": 0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "target_experts": False,
    },
    "training": {
        "max_steps": 60,
        "batch_size": 1,
        "gradient_accumulation_steps": 16,
        "learning_rate": 2e-4,
        "lr_scheduler": "linear",
        "warmup_steps": 5,
    },
}

# Notebook parameter -> config path.
PARAMETERS = {
    "MAX_STEPS": ("training", "max_steps"),
    "BATCH_SIZE": ("training", "batch_size"),
    "GRADIENT_ACCUMULATION_STEPS": ("training", "gradient_accumulation_steps"),
    "LEARNING_RATE": ("training", "learning_rate"),
    "MAX_SEQ_LENGTH": ("data", "max_seq_length"),
    "LORA_R": ("lora", "r"),
    "LORA_ALPHA": ("lora", "alpha"),
    "TARGET_EXPERTS": ("lora", "target_experts"),
    "OUTPUT_DIR": ("training", "output_dir"),
    "GPUS": ("training", "gpus"),
}


is_embedded = sources.is_embedded


def is_tiny(model: str) -> bool:
    """The CPU-sized embedded models; the full-size random 20b is a GPU run and takes the reference settings."""
    source = sources.find(model)
    return source is not None and not source.full_size


def settings(model: str, data: str, **parameters: Any) -> dict:
    """The full, validated config for the tutorial; parameters left as None keep the defaults."""
    if is_tiny(model):
        from ..embedded.base import TUTORIAL_SETTINGS

        base = {k: v for k, v in copy.deepcopy(TUTORIAL_SETTINGS).items() if k in ("model", "data", "lora", "training")}
    else:
        base = copy.deepcopy(REFERENCE_SETTINGS)
    base.setdefault("model", {})["name_or_path"] = model
    base.setdefault("data", {})["source"] = data
    unknown = set(parameters) - set(PARAMETERS)
    if unknown:
        raise ValueError(f"unknown tutorial parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(PARAMETERS)}")
    for name, value in parameters.items():
        if value is not None:
            section, key = PARAMETERS[name]
            base.setdefault(section, {})[key] = value
    return with_defaults(base)


def summary(session) -> str:
    """Final loss and the reasoning-language rate before and after, one line each."""
    lines = []
    result = session.last_result
    if result is not None:
        metrics = list(result.metrics)
        first = metrics[0].loss if metrics else None
        last = metrics[-1].loss if metrics else None
        loss = f"loss {first:.3f} -> {last:.3f}" if first is not None and last is not None else "no logged loss"
        lines.append(f"training: {result.status} at step {result.step}/{result.max_steps}, {loss}")
    for label, rate in session.evaluations.items():
        lines.append(
            f"reasoning in the requested language ({label}): {rate.in_language:.0%} of "
            f"{rate.non_english_requests} non-English held-out questions; well-formed Harmony "
            f"{rate.well_formed:.0%} of {rate.requests}"
        )
    saved = getattr(session, "saved", None) or {}
    for kind, path in saved.items():
        lines.append(f"saved {kind}: {path}")
    return "\n".join(lines) or "nothing has run yet"
