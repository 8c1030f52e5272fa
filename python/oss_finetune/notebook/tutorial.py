"""The tutorials' settings and closing summary, shared by the notebooks and their tests.

The notebooks' parameters name a model and a data set; everything else has two sets of defaults:
the reference run for a hub model on a GPU, and a CPU-sized run for the embedded tiny GPT-OSS.
``settings`` serves notebooks/gpt-oss-multilingual-reasoning.ipynb, ``tool_settings``
notebooks/gpt-oss-tool-calling.ipynb.
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

# The tool-calling tutorial's run on the embedded tiny base (notebooks/gpt-oss-tool-calling.ipynb).
# bench/RESULTS.md has the runs that chose these values.
TOOL_SETTINGS: dict[str, Any] = {
    "data": {
        "source": "embedded:tool-calls",
        "loss_mask": "assistant",
        "max_seq_length": 512,
        "reasoning_effort": "medium",
    },
    "lora": {
        # Rank 64 is the tiny model's whole width: at rank 16 the output layer's new tokens share 16
        # directions and the adapter confuses them ("to=functionsary"); r 16 reached 0% in 60 steps.
        "r": 64,
        "alpha": 128,
        "dropout": 0,
        # The tiny base's output layer knows only the ~2,900 tokens of its own training text; a call
        # needs others ("functions", "json", '{"', the tools' names), so the output layer takes LoRA too.
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"],
        "target_experts": True,
    },
    "training": {
        # At 60 steps the adapter still sends unit conversions to the calculator (48 to 54% right); at 120
        # other seeds still do (78 and 87%), at 150 less (90 and 93%): under 4 minutes on the fast engine.
        "max_steps": 150,
        "batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-3,
        "lr_scheduler": "linear",
        "warmup_steps": 2,
        "weight_decay": 0.0,
        "gradient_checkpointing": False,
        # The fast engine trains the output layer's LoRA in its chunked loss: 2.5 times the transformers
        # engine's speed on a 2-core CPU, where that layer's 201,088-wide logits take most of a step.
        "engine": "fast",
        # A step's 16 rows (at most 356 tokens each) in one micro-batch: the output layer's merged
        # weight and logits buffer are then made once a step.
        "pack_tokens": 8192,
        "seed": 3407,
    },
    "evaluation": {"heldout": "embedded:tool-calls-heldout", "max_new_tokens": 128, "date": "2025-06-28"},
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


# The multilingual tutorial watches its goal while it trains (training.watch_every): a few held-out
# questions, one per language, at a cadence that costs little: on a 2-core CPU a watch of four
# questions takes a few training steps' time, three times in a 30-step run.
TUTORIAL_WATCH = {"watch_every": 10, "watch_count": 4, "watch_prompts": "embedded:multilingual-heldout"}
REFERENCE_WATCH = {"watch_every": 20, "watch_count": 8, "watch_prompts": "embedded:multilingual-heldout"}

# The multilingual notebook's parameters: the common ones, the held-out questions (also the watch's)
# and how often the goal is watched (0 switches the watch off).
LANGUAGE_PARAMETERS = {
    **PARAMETERS,
    "HELDOUT": ("training", "watch_prompts"),
    "WATCH_EVERY": ("training", "watch_every"),
}

# The tool-calling notebook's parameters: the same, and the loss policy it teaches.
TOOL_PARAMETERS = {**PARAMETERS, "LOSS_MASK": ("data", "loss_mask")}

is_embedded = sources.is_embedded


def is_tiny(model: str) -> bool:
    """The CPU-sized embedded models; the full-size random 20b is a GPU run and takes the reference settings."""
    source = sources.find(model)
    return source is not None and not source.full_size


def settings(model: str, data: str, **parameters: Any) -> dict:
    """The full, validated config for the tutorial; parameters left as None keep the defaults."""
    if is_tiny(model):
        from ..embedded.base import TUTORIAL_SETTINGS

        base = copy.deepcopy(TUTORIAL_SETTINGS)
        base["training"].update(TUTORIAL_WATCH)
    else:
        base = copy.deepcopy(REFERENCE_SETTINGS)
        base["training"].update(REFERENCE_WATCH)
    if parameters.get("WATCH_EVERY") == 0:
        base["training"]["watch_every"] = None
        parameters = {**parameters, "WATCH_EVERY": None}
    return _with_parameters(base, model, data, LANGUAGE_PARAMETERS, parameters)


def tool_settings(model: str, data: str, **parameters: Any) -> dict:
    """The full, validated config for the tool-calling tutorial: ``TOOL_SETTINGS`` for the embedded tiny
    model, the reference run with the ``calls_and_final`` loss mask for a hub model (gpt-oss already
    reasons before its calls; the adapter need only learn the calls and answers); parameters left as
    None keep the defaults."""
    if is_tiny(model):
        base = copy.deepcopy(TOOL_SETTINGS)
    else:
        base = copy.deepcopy(REFERENCE_SETTINGS)
        base["data"]["loss_mask"] = "calls_and_final"
    return _with_parameters(base, model, data, TOOL_PARAMETERS, parameters)


def _with_parameters(base: dict, model: str, data: str, known: dict, parameters: dict) -> dict:
    base = {k: v for k, v in base.items() if k in ("model", "data", "lora", "training")}
    base.setdefault("model", {})["name_or_path"] = model
    base.setdefault("data", {})["source"] = data
    unknown = set(parameters) - set(known)
    if unknown:
        raise ValueError(f"unknown tutorial parameter(s) {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    for name, value in parameters.items():
        if value is not None:
            section, key = known[name]
            base.setdefault(section, {})[key] = value
    return with_defaults(base)


def loss_masks(session, row: int = 0, masks: tuple[str, ...] = ("assistant", "calls_and_final", "final")) -> dict:
    """One prepared row under several loss policies, as one harmony-tokens payload: the trained tokens of
    each policy, side by side in the view."""
    from ..core import harmony, schema

    prepared = session.ensure_data()
    rows = getattr(prepared, "rows", None) or []
    if not 0 <= row < len(rows):
        raise ValueError(f"row {row} does not exist: the prepared data has rows 0 to {len(rows) - 1}")
    conversation = rows[row].conversation
    tokenizer = session.loaded.tokenizer
    items = []
    for mask in masks:
        rendered = harmony.render(conversation, mode="train", loss_mask=mask, tokenizer=tokenizer)
        items.append(
            rendered.to_payload(title=f"row {row}, loss mask {mask}: {rendered.tokens_trained} tokens trained")
        )
    payload = {"version": 1, "title": f"row {row} under {len(masks)} loss policies", "conversations": items}
    return schema.validate("harmony-tokens", payload)


def summary(session) -> str:
    """Final loss and each evaluation (reasoning language, or tool calls) before and after, one line each."""
    lines = []
    result = session.last_result
    if result is not None:
        metrics = list(result.metrics)
        first = metrics[0].loss if metrics else None
        last = metrics[-1].loss if metrics else None
        loss = f"loss {first:.3f} -> {last:.3f}" if first is not None and last is not None else "no logged loss"
        lines.append(f"training: {result.status} at step {result.step}/{result.max_steps}, {loss}")
    for label, rate in session.evaluations.items():
        if hasattr(rate, "right_and_valid"):
            lines.append(
                f"{label}: right tool with valid arguments {rate.right_and_valid:.0%} of {rate.requests} held-out "
                f"requests; well-formed {rate.well_formed:.0%}, right tool {rate.right_tool:.0%}, valid arguments "
                f"{rate.valid_arguments:.0%}, exactly the expected arguments {rate.exact_arguments:.0%}"
            )
            continue
        lines.append(
            f"reasoning in the requested language ({label}): {rate.in_language:.0%} of "
            f"{rate.non_english_requests} non-English held-out questions; well-formed Harmony "
            f"{rate.well_formed:.0%} of {rate.requests}"
        )
    saved = getattr(session, "saved", None) or {}
    for kind, path in saved.items():
        lines.append(f"saved {kind}: {path}")
    return "\n".join(lines) or "nothing has run yet"
