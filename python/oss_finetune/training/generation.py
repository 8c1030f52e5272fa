"""Generation with or without the adapter, and per-token scores of a sequence: chat, the before/after
views and the language evaluation sit on these.

A GPT-OSS model (``engine.supports``) generates through ``modeling.decoding``: a KV cache on the fast
engine's pieces, the adapter unmerged, several prompts in one batch, and in that batch rows with and
without the adapter. Any other model goes through transformers' ``generate``, which is also the
reference the decoding path is tested against (``transformers_generate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..modeling.adapter import adapter_enabled
from ..modeling.model import CALL_TOKEN_ID, PAD_TOKEN_ID, RETURN_TOKEN_ID, model_device, unwrap

STOP_TOKEN_IDS = (RETURN_TOKEN_ID, CALL_TOKEN_ID)


# -- generation ----------------------------------------------------------------------------------
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
    stop_token_ids: Sequence[int] = STOP_TOKEN_IDS,
    on_token: Callable[[int], Any] | None = None,
) -> list[int]:
    """Continue ``prompt_ids``; returns the new token ids (stop token included when reached).

    Greedy unless ``temperature`` > 0. ``seed`` makes sampling repeatable without touching the caller's
    random stream. ``on_token`` receives each new id as it is produced, for streaming views.
    """
    if not prompt_ids:
        raise ValueError("generate needs at least one prompt token")
    [new] = generate_many(
        model,
        [list(prompt_ids)],
        max_new_tokens,
        tokenizer=tokenizer,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        use_adapter=use_adapter,
        stop_token_ids=stop_token_ids,
        on_token=None if on_token is None else (lambda _row, token: on_token(token)),
    )
    return new


def generate_many(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    adapter_rows: Sequence[bool] | None = None,
    use_adapter: bool = True,
    tokenizer=None,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    stop_token_ids: Sequence[int] = STOP_TOKEN_IDS,
    on_token: Callable[[int, int], Any] | None = None,
) -> list[list[int]]:
    """Continue several prompts in one batch; returns each row's new ids, cut after its first stop token.

    ``adapter_rows``: per row, whether the LoRA adapter applies to it (the same prompt with and without
    the adapter then costs one pass); None: ``use_adapter`` for every row. ``on_token(row, id)``
    streams the tokens as they come. Greedy unless ``temperature`` > 0, with ``seed`` as in ``generate``.
    """
    from ..modeling import engine

    prompts = [list(p) for p in prompts]
    if not prompts:
        return []
    if any(not p for p in prompts):
        raise ValueError("generate needs at least one prompt token in every prompt")
    if adapter_rows is not None:
        adapter_rows = [bool(flag) for flag in adapter_rows]
        if len(adapter_rows) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(adapter_rows)} adapter_rows entries")
        if not hasattr(model, "peft_config"):
            adapter_rows = None  # no adapter to switch: every row is the model as it is
            use_adapter = True
        elif len(set(adapter_rows)) == 1:
            # One setting for every row is what the adapter switch already does, without a per-row mask.
            use_adapter, adapter_rows = adapter_rows[0], None
        else:
            use_adapter = True  # switched on for the whole model; the rows say where it applies
    decoding = engine.supports(model)

    def one_pass(batch: Sequence[Sequence[int]], adapter: bool, rows_on: list[bool] | None, stream) -> list[list[int]]:
        if decoding:
            from ..modeling.decoding import generate_batch

            options: dict[str, Any] = dict(
                stop_token_ids=tuple(stop_token_ids), temperature=temperature, top_p=top_p, seed=seed, on_token=stream
            )
            if rows_on is not None:
                options["adapter_rows"] = rows_on
            with adapter_enabled(model, adapter):
                return generate_batch(model, batch, max_new_tokens, **options)
        return transformers_generate(
            model,
            batch,
            max_new_tokens,
            tokenizer=tokenizer,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            use_adapter=adapter,
            stop_token_ids=stop_token_ids,
            on_token=stream,
        )

    was_training = model.training
    model.eval()  # the adapter's dropout is for training only
    try:
        if adapter_rows is None:
            return one_pass(prompts, use_adapter, None, on_token)
        if decoding and adapters_switch_per_row(model):
            return one_pass(prompts, True, adapter_rows, on_token)
        # The adapter cannot be switched per row here: one pass for each setting, rows put back in order.
        out: list[list[int]] = [[] for _ in prompts]
        for flag in (False, True):
            rows = [row for row, wanted in enumerate(adapter_rows) if wanted == flag]
            if not rows:
                continue
            made = one_pass([prompts[row] for row in rows], flag, None, _renumbered(on_token, rows))
            for row, new in zip(rows, made):
                out[row] = new
        return out
    finally:
        model.train(was_training)


# The LoRA layers modeling.decoding applies row by row; it runs any other (the output layer's, the
# embedding's) as a plain module, for every row of the batch alike.
_PER_ROW_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj")


def adapters_switch_per_row(model) -> bool:
    """Whether modeling.decoding can apply every LoRA layer of ``model`` to some rows of a batch only."""
    for name, module in unwrap(model).named_modules():
        if not getattr(module, "lora_A", None):
            continue
        parts = name.split(".")
        if "self_attn" in parts and parts[-1] in _PER_ROW_LAYERS:
            continue
        if "experts" in parts:
            continue
        return False
    return True


def _renumbered(on_token: Callable[[int, int], Any] | None, rows: list[int]) -> Callable[[int, int], Any] | None:
    """``on_token`` for a sub-batch: its row i is row ``rows[i]`` of the whole batch."""
    if on_token is None:
        return None
    return lambda i, token: on_token(rows[i], token)


def transformers_generate(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    tokenizer=None,
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    use_adapter: bool = True,
    stop_token_ids: Sequence[int] = STOP_TOKEN_IDS,
    on_token: Callable[[int, int], Any] | None = None,
) -> list[list[int]]:
    """Left-padded prompts through transformers' ``generate``: the path for models the decoding path does
    not walk, and the reference its tokens are compared with. Same arguments and result as ``generate_many``."""
    from transformers.generation.streamers import BaseStreamer

    device = model_device(model)
    width = max(len(p) for p in prompts)
    pad = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
    pad = pad if pad is not None else PAD_TOKEN_ID
    ids = torch.full((len(prompts), width), pad, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    stops = set(stop_token_ids)

    class _Stream(BaseStreamer):
        def __init__(self):
            self.prompt_seen = False
            self.done = [False] * len(prompts)

        def put(self, value):
            if not self.prompt_seen:  # generate() first echoes the prompt
                self.prompt_seen = True
                return
            # A finished row goes on receiving padding until every row is done; it is not streamed.
            for row, token in enumerate(value.reshape(-1).tolist()):
                if self.done[row]:
                    continue
                on_token(row, int(token))  # type: ignore[misc]  # a _Stream is made only when on_token is set
                self.done[row] = int(token) in stops

        def end(self):
            pass

    kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        eos_token_id=list(stop_token_ids),
        pad_token_id=pad,
        attention_mask=mask.to(device),
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
            output = model.generate(input_ids=ids.to(device), **kwargs)
    finally:
        model.train(was_training)
    results = []
    for row in output[:, width:].tolist():
        cut = next((i for i, token in enumerate(row) if token in stops), None)
        results.append(row[: cut + 1] if cut is not None else row)
    return results


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
