"""Generation with or without the adapter, and per-token scores of a sequence: chat, the before/after
views and the language evaluation sit on these (transformers' ``generate`` underneath)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..modeling.adapter import adapter_enabled
from ..modeling.model import CALL_TOKEN_ID, PAD_TOKEN_ID, RETURN_TOKEN_ID, model_device, unwrap


# -- generation and per-token scores -------------------------------------------------------------
def generate(
    model,
    tokenizer=None,
    prompt_ids: Sequence[int] = (),
    max_new_tokens: int = 64,
    *,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    use_adapter: bool = True,
    stop_token_ids: Sequence[int] = (RETURN_TOKEN_ID, CALL_TOKEN_ID),
    on_token: Callable[[int], Any] | None = None,
) -> list[int]:
    """Continue ``prompt_ids``; returns the new token ids (stop token included when reached).

    Greedy unless ``temperature`` > 0. ``seed`` makes sampling repeatable without touching the caller's
    random stream. ``on_token`` receives each new id as it is produced, for streaming views.
    """
    from transformers.generation.streamers import BaseStreamer

    if not prompt_ids:
        raise ValueError("generate needs at least one prompt token")
    device = model_device(model)
    ids = torch.tensor([list(prompt_ids)], dtype=torch.long, device=device)
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    pad = pad if pad is not None else PAD_TOKEN_ID

    class _Stream(BaseStreamer):
        def __init__(self):
            self.prompt_seen = False

        def put(self, value):
            if not self.prompt_seen:  # generate() first echoes the prompt
                self.prompt_seen = True
                return
            for token in value.reshape(-1).tolist():
                on_token(int(token))  # type: ignore[misc]  # a _Stream is made only when on_token is set

        def end(self):
            pass

    kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_token_ids),
        pad_token_id=pad,
        attention_mask=torch.ones_like(ids),
        streamer=_Stream() if on_token is not None else None,
    )
    if temperature and temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p if top_p is not None else 1.0, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    try:
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            torch.no_grad(),
            adapter_enabled(model, use_adapter),
        ):
            if seed is not None:
                torch.manual_seed(seed)
            output = model.generate(input_ids=ids, **kwargs)
    finally:
        model.train(was_training)
    return output[0, ids.shape[1] :].tolist()


@dataclass
class TokenScores:
    """Per-token scores of one sequence. Entry i scores token i given tokens < i (None for token 0)."""

    input_ids: list[int]
    logprobs: list[float | None]
    trained: list[bool]

    @property
    def losses(self) -> list[float | None]:
        return [None if lp is None else -lp for lp in self.logprobs]

    @property
    def mean_loss(self) -> float | None:
        """Mean loss over the trained tokens, the number a training step reports."""
        values = [-lp for lp, t in zip(self.logprobs, self.trained) if t and lp is not None]
        return sum(values) / len(values) if values else None

    def to_dict(self) -> dict:
        return {
            "input_ids": self.input_ids,
            "logprobs": self.logprobs,
            "losses": self.losses,
            "trained": self.trained,
            "mean_loss": self.mean_loss,
        }


def token_logprobs(
    model,
    input_ids: Sequence[int],
    trained_mask: Sequence[bool] | None = None,
    *,
    use_adapter: bool = True,
    chunk: int = 1024,
) -> TokenScores:
    """Log-probability of every token of ``input_ids`` under the model, adapter on or off."""
    ids_list = list(input_ids)
    mask = [bool(t) for t in trained_mask] if trained_mask is not None else [True] * len(ids_list)
    if len(mask) != len(ids_list):
        raise ValueError(f"{len(ids_list)} tokens but {len(mask)} mask entries")
    device = model_device(model)
    ids = torch.tensor([ids_list], dtype=torch.long, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), adapter_enabled(model, use_adapter):
            inner = unwrap(model)
            hidden = inner.model(input_ids=ids, use_cache=False).last_hidden_state[0, :-1]
            targets = ids[0, 1:]
            scores = []
            # Chunks keep the 201k-wide log-softmax to chunk x vocab floats at a time.
            for start in range(0, targets.numel(), chunk):
                logits = inner.lm_head(hidden[start : start + chunk]).float()
                logp = torch.log_softmax(logits, dim=-1)
                scores.append(logp.gather(1, targets[start : start + chunk, None])[:, 0])
            values = torch.cat(scores).tolist() if scores else []
    finally:
        model.train(was_training)
    return TokenScores(ids_list, [None] + values, mask)
