"""The LoRA adapter after training: save it, load it onto a base, fold it in, or switch it off for a
moment. ``model.apply_lora`` adds it."""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path


@contextlib.contextmanager
def peft_quietly():
    """peft asks transformers' deprecated ``is_gradient_checkpointing`` as it wraps a model; that
    FutureWarning is addressed to peft, and a person reading it could do nothing about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        yield


def save_adapter(model, path: str | os.PathLike) -> str:
    """Save the adapter in PEFT format (adapter_config.json + adapter_model.safetensors)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), safe_serialization=True)
    return str(path)


def load_adapter(base_model, path: str | os.PathLike, *, trainable: bool = False):
    """Put a saved adapter on a base model: ``PeftModel.from_pretrained`` under the hood."""
    from peft import PeftModel

    with peft_quietly():
        return PeftModel.from_pretrained(base_model, str(path), is_trainable=trainable)


def merge_adapter(model, path: str | os.PathLike | None = None, *, tokenizer=None):
    """Fold the adapter into the base weights and return the plain transformers model.

    The peft wrapper is consumed (its layers are replaced in place). With ``path``, the merged model
    is written with save_pretrained (and the tokenizer beside it), loadable with ``load_model``.
    """
    merged = model.merge_and_unload()
    if path is not None:
        Path(path).mkdir(parents=True, exist_ok=True)
        merged.save_pretrained(str(path))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))
    return merged


@contextlib.contextmanager
def adapter_enabled(model, enabled: bool = True):
    """Run with the adapter on (default) or off; a model without an adapter is used as is."""
    if enabled or not hasattr(model, "disable_adapter"):
        yield model
    else:
        with model.disable_adapter():
            yield model


def load_adapter_weights(model, path: str | os.PathLike) -> None:
    """Put the weights of a saved adapter (a PEFT folder or a checkpoints/step-N) into the adapter
    ``model`` already has, in place; raises ValueError when they belong to another adapter."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    # Where the adapter is: a base built on the meta device (sharded loading) holds its adapter on the host.
    device = next((p.device for p in model.parameters() if p.requires_grad), next(model.parameters()).device)
    weights = load_file(str(Path(path) / "adapter_model.safetensors"), device=str(device))
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"the adapter in {path} does not fit this model: unexpected {list(unexpected)[:3]}")
