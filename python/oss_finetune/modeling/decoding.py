"""Generation on the fast engine's pieces: a preallocated KV cache, attention with sinks over it, the
grouped experts, and the LoRA adapters applied unmerged (attention and experts), for prompts of
different lengths at once.

Prompts are right-aligned in a batch (left padding): every row then writes its next token into the
same cache column, and a row's padding is masked out of its attention. Each row keeps its own
positions (rope counts from its first real token), so a batched row decodes as it would alone.

The first slice of generation at the speed of the hardware: the cache holds every position for every
layer (the sliding-window layers mask what is out of their window rather than keeping only it), and
no step is compiled or captured in a CUDA graph yet.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .engine import _causal_lm, _linear, _rms_norm, _rotate
from .experts import experts_forward


@dataclass
class KVCache:
    """Keys and values of every layer, (batch, kv heads, capacity, head dim), filled up to ``length``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    @classmethod
    def empty(cls, model: Any, batch: int, capacity: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        config = model.config
        shape = (batch, config.num_key_value_heads, capacity, config.head_dim)
        layers = config.num_hidden_layers
        return cls(
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
            [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)],
        )


def _attend(q, keys, values, sinks, scale: float, allowed: torch.Tensor) -> torch.Tensor:
    """q (B, H, T, D) over keys/values (B, Hkv, S, D); ``allowed`` (B, T, S). Each head's sink is one more
    logit in its softmax whose value is nothing: it only takes its share of the probability."""
    groups = q.shape[1] // keys.shape[1]
    keys = keys.repeat_interleave(groups, dim=1)
    values = values.repeat_interleave(groups, dim=1)
    scores = torch.matmul(q, keys.transpose(-1, -2)) * scale  # B, H, T, S
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    sink = sinks.reshape(1, -1, 1, 1).to(scores.dtype).expand(*scores.shape[:-1], 1)
    combined = torch.cat([scores, sink], dim=-1)
    combined = combined - combined.amax(dim=-1, keepdim=True)
    probs = torch.softmax(combined, dim=-1, dtype=combined.dtype)[..., :-1]
    return torch.matmul(probs.to(values.dtype), values)


def _layer_step(layer, index: int, hidden, cos, sin, cache: KVCache, start: int, allowed_full, allowed_window):
    """One layer over new tokens hidden (B, T, hidden) written at cache columns start..start+T."""
    batch, tokens, _ = hidden.shape
    attention = layer.self_attn
    norm = layer.input_layernorm
    normed = _rms_norm(hidden, norm.weight, norm.variance_epsilon)
    head_dim = attention.head_dim
    q = _linear(attention.q_proj, normed).view(batch, tokens, -1, head_dim).transpose(1, 2)
    k = _linear(attention.k_proj, normed).view(batch, tokens, -1, head_dim).transpose(1, 2)
    v = _linear(attention.v_proj, normed).view(batch, tokens, -1, head_dim).transpose(1, 2)
    q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
    end = start + tokens
    cache.keys[index][:, :, start:end] = k
    cache.values[index][:, :, start:end] = v
    allowed = allowed_window if attention.sliding_window else allowed_full
    attended = _attend(
        q, cache.keys[index][:, :, :end], cache.values[index][:, :, :end], attention.sinks, attention.scaling, allowed
    )
    hidden = hidden + _linear(attention.o_proj, attended.transpose(1, 2).reshape(batch, tokens, -1))
    norm = layer.post_attention_layernorm
    normed = _rms_norm(hidden, norm.weight, norm.variance_epsilon).reshape(batch * tokens, -1)
    router = layer.mlp.router
    logits = F.linear(normed, router.weight, router.bias)
    top_values, top_indices = torch.topk(logits, router.top_k, dim=-1)
    top_weights = torch.softmax(top_values, dim=1, dtype=top_values.dtype)
    moe = experts_forward(layer.mlp.experts, normed, top_indices, top_weights)
    return hidden + moe.view(batch, tokens, -1)


class Decoder:
    """The model's forward over a KV cache: ``prefill`` the prompts, then ``step`` one token a row."""

    def __init__(self, model: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int):
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        self.inner = _causal_lm(model)
        body = self.inner.model
        self.body = body
        parameter = next(self.inner.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        width = max(len(p) for p in prompts)
        self.width = width
        self.pad = torch.tensor([width - len(p) for p in prompts], device=self.device)  # padding of each row
        ids = torch.zeros((len(prompts), width), dtype=torch.long, device=self.device)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long, device=self.device)
        self.prompt_ids = ids
        self.cache = KVCache.empty(self.inner, len(prompts), width + max_new_tokens, self.dtype, self.device)
        window = getattr(self.inner.config, "sliding_window", None)
        self.window = int(window) if window else None

    def _masks(self, start: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Which cache columns each new position of each row attends to: causal, never a row's padding,
        and for the sliding-window layers only the last ``window`` positions."""
        query = torch.arange(start, start + tokens, device=self.device)[None, :, None]  # 1, T, 1
        key = torch.arange(start + tokens, device=self.device)[None, None, :]  # 1, 1, S
        real = key >= self.pad[:, None, None]
        full = (key <= query) & real
        windowed = full & (key > query - self.window) if self.window else full
        return full, windowed

    def _forward(self, ids: torch.Tensor, start: int) -> torch.Tensor:
        tokens = ids.shape[1]
        positions = (torch.arange(start, start + tokens, device=self.device)[None, :] - self.pad[:, None]).clamp(min=0)
        hidden = self.body.embed_tokens(ids)
        cos, sin = self.body.rotary_emb(hidden, positions)
        cos, sin = cos[:, None], sin[:, None]  # B, 1, T, D/2 against B, H, T, D
        full, windowed = self._masks(start, tokens)
        for index, layer in enumerate(self.body.layers):
            hidden = _layer_step(layer, index, hidden, cos, sin, self.cache, start, full, windowed)
        self.cache.length = start + tokens
        last = hidden[:, -1]
        normed = _rms_norm(last, self.body.norm.weight, self.body.norm.variance_epsilon)
        return self.inner.lm_head(normed).float()

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        """The logits (batch, vocab) of the token after each prompt."""
        return self._forward(self.prompt_ids, 0)

    @torch.no_grad()
    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token a row (batch,); the logits of the token after it."""
        return self._forward(next_ids[:, None], self.cache.length)


def generate_batch(
    model: Any,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    stop_token_ids: Sequence[int] = (),
    temperature: float = 0.0,
    top_p: float | None = None,
    seed: int | None = None,
    on_token: Callable[[int, int], Any] | None = None,
) -> list[list[int]]:
    """New tokens for each prompt, each row cut after its first stop token. Greedy unless ``temperature``
    > 0 (then top-p sampling from a generator seeded by ``seed``). ``on_token(row, id)`` streams them."""
    decoder = Decoder(model, prompts, max_new_tokens)
    generator = None
    if temperature and temperature > 0:
        generator = torch.Generator(device=decoder.device)
        # Its own generator: sampling never moves the caller's random stream.
        if seed is not None:
            generator.manual_seed(seed)
        else:
            generator.seed()
    stops = torch.tensor(list(stop_token_ids) or [-1], device=decoder.device)
    rows = len(prompts)
    out: list[list[int]] = [[] for _ in range(rows)]
    done = torch.zeros(rows, dtype=torch.bool, device=decoder.device)
    logits = decoder.prefill()
    for _ in range(max_new_tokens):
        chosen = _choose(logits, temperature, top_p, generator)
        for row, token in enumerate(chosen.tolist()):
            if not done[row]:
                out[row].append(token)
                if on_token is not None:
                    on_token(row, token)
        done |= torch.isin(chosen, stops)
        if bool(done.all()):
            break
        logits = decoder.step(chosen)
    return out


def _choose(logits: torch.Tensor, temperature: float, top_p: float | None, generator) -> torch.Tensor:
    if not temperature or temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p is not None and top_p < 1.0:
        ordered, order = probs.sort(dim=-1, descending=True)
        keep = ordered.cumsum(dim=-1) - ordered < top_p  # the smallest set whose mass reaches top_p
        ordered = ordered * keep
        probs = torch.zeros_like(probs).scatter(-1, order, ordered)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
