"""The layers a LoRA adapter goes on, checked against the loaded model before peft sees the list.

peft ignores a ``target_modules`` name that matches nothing as long as another name matches, so
Unsloth's list for gpt-oss (``q_proj ... gate_proj, up_proj, down_proj``, names of a Llama-style
MLP) silently became attention-only: gpt-oss has no such modules, its MLP is a mixture of experts
held in 3-D parameters that peft reaches through ``target_parameters`` (``lora.target_experts``).
Here every name either matches a layer of the model, or is one of those MLP names and becomes LoRA
on the experts (said in one line), or is refused with the names that would work.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core.errors import UserError

FIELD = "lora.target_modules"
# What people write for "the MLP too": Unsloth's names, gpt-oss's own parameter names, the module's name.
EXPERT_NAMES = ("gate_proj", "up_proj", "down_proj", "gate_up_proj", "experts")
# The example a fix shows: the reference run's targets.
ATTENTION = "q_proj,k_proj,v_proj,o_proj"


class TargetError(UserError, ValueError):
    """A target list that would not put LoRA where it says; the message names the field and the fix."""

    path = FIELD


@dataclass
class Resolved:
    lora: dict[str, Any]  # the lora section the adapter is built with
    note: str | None = None  # one line when a name was mapped onto the experts


def _adaptable(module: Any) -> bool:
    import torch

    # peft wraps a layer it adapted; the wrapper counts as the layer it wraps.
    layer = getattr(module, "base_layer", module)
    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    return isinstance(layer, kinds) or type(layer).__name__ == "Conv1D"


def adaptable_names(model: Any) -> list[str]:
    """Dotted names of the layers peft can put LoRA on (not peft's own lora_A / base_layer inside them)."""
    names = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if not name or "base_layer" in parts or any(p.startswith("lora_") for p in parts):
            continue
        if _adaptable(module):
            names.append(name)
    return names


def _matches(target: str, names: Iterable[str]) -> bool:
    # peft's rule for a list entry: the whole name, or its last dotted parts.
    return any(n == target or n.endswith("." + target) for n in names)


def _experts(model: Any) -> list[Any]:
    return [m for n, m in model.named_modules() if n.endswith("mlp.experts")]


def _kept_in_mxfp4(experts: list[Any]) -> bool:
    from ..modeling.mxfp4 import Mxfp4Experts

    return any(isinstance(m, Mxfp4Experts) for m in experts)


def _short_names(names: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.rsplit(".", 1)[-1])
    return list(seen)


def resolve(lora: dict[str, Any], model: Any, model_name: str) -> Resolved:
    """The lora section as it will be applied to ``model``; raises TargetError for a name that matches nothing."""
    names = adaptable_names(model)
    experts = _experts(model)
    kept, mapped, unknown = [], [], []
    for target in lora["target_modules"]:
        if _matches(target, names):
            kept.append(target)
        elif target in EXPERT_NAMES and experts:
            mapped.append(target)
        else:
            unknown.append(target)
    layers = _short_names(names)
    if unknown:
        close = [m for t in unknown for m in difflib.get_close_matches(t, layers, n=1)]
        hint = f"did you mean {', '.join(close)}? " if close else ""
        experts_hint = "; the experts take LoRA with --target-experts" if experts else ""
        raise TargetError(
            f"{FIELD}: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a layer of {model_name} — "
            f"{hint}its layers that take LoRA are {', '.join(layers)}{experts_hint}; "
            f"e.g. --targets {ATTENTION}"
        )
    if not mapped:
        return Resolved(dict(lora))
    words = ", ".join(mapped)
    if _kept_in_mxfp4(experts):
        raise TargetError(
            f"{FIELD}: {words} would put LoRA on the experts, but {model_name} keeps them in MXFP4 "
            f"(model.mxfp4_experts), where they take no adapter — use --targets {ATTENTION}, "
            "or load without --mxfp4-experts"
        )
    if not kept:
        raise TargetError(
            f"{FIELD}: {words} name the MLP, which in gpt-oss is the experts; the adapter needs at least one "
            f"other layer besides them — e.g. --targets {ATTENTION} --target-experts"
        )
    note = (
        f"{FIELD}: gpt-oss has no {words} modules (Llama-style MLP names); its MLP is the mixture of experts, "
        f"so LoRA goes on the experts' gate_up_proj and down_proj instead (lora.target_experts: true, "
        f"target_modules: {', '.join(kept)})"
    )
    return Resolved(dict(lora, target_modules=kept, target_experts=True), note)


def target_counts(peft_model: Any) -> dict[str, int]:
    """Trainable adapter parameters per target: ``q_proj``, ..., then ``experts.gate_up_proj``, ``experts.down_proj``."""
    from ..modeling.model import EXPERT_PARAMETERS

    counts: dict[str, int] = {}
    for name, module in peft_model.named_modules():
        if not hasattr(module, "lora_A"):
            continue
        parameter = getattr(module, "parameter_name", None)
        key = f"experts.{parameter}" if parameter else name.rsplit(".", 1)[-1]
        # Only this layer's own factors: a wrapped wrapper (two expert weights) holds the other's too.
        own = sum(p.numel() for n, p in module.named_parameters() if n.split(".", 1)[0].startswith("lora_"))
        counts[key] = counts.get(key, 0) + own
    # peft nests the expert wrappers last-first; show them in the order the config names them.
    expert_order = [f"experts.{name.rsplit('.', 1)[-1]}" for name in EXPERT_PARAMETERS]
    ordered = [key for key in counts if key not in expert_order] + [key for key in expert_order if key in counts]
    return {key: counts[key] for key in ordered}


def describe(peft_model: Any, lora: dict[str, Any]) -> str:
    """One line: r, alpha, each target with its parameter count, and the trainable total."""
    from ..modeling.model import all_parameters, trainable_parameters

    trainable, total = trainable_parameters(peft_model), all_parameters(peft_model)
    targets = " · ".join(f"{key} {count:,}" for key, count in target_counts(peft_model).items())
    return (
        f"LoRA: r {lora['r']}, alpha {lora['alpha']:g} on {targets}; "
        f"{trainable:,} trainable parameters of {total:,} ({100 * trainable / max(total, 1):.4f}%)"
    )
