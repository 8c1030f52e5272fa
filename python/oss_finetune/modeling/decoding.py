"""Generation on the fast engine's pieces: a preallocated KV cache, attention with sinks over it, the
grouped experts, and the LoRA adapters applied unmerged (attention and experts), for prompts of
different lengths at once.

How a batch is laid out:
- The prompts are prefilled packed, with no padding, through the engine's sink attention (flash on a
  GPU). Their keys and values are then written right-aligned into the cache, so every row writes its
  next token into the same cache column and a row's empty columns are masked out of its attention.
  Each row keeps its own positions (rope counts from its first real token), so a batched row decodes
  as it would alone.
- A full-attention layer keeps every column; a sliding-window layer keeps only its window, as a ring
  of ``window`` slots (a column lives in slot column % window).
- A decode step has the same shapes every time (the column is a tensor, attention runs over the whole
  cache with a mask), so on CUDA it is captured once as a CUDA graph and replayed: a step is then one
  launch instead of some 1,500 kernels launched from Python, which is what bounds batch-1 decoding.
- ``adapter_rows`` applies the adapter per row: the same prompt with and without it is one batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .engine import _causal_lm, _live_rows, _rms_norm, _rotate_pair, sink_attention
from .experts import (
    COMPARED_ROUTING_MAX_ROWS,
    SortedRows,
    experts_forward,
    route_by_comparison,
    sorted_rows_forward,
)
from .kernels import fused

log = logging.getLogger(__name__)


@dataclass
class LayerCache:
    """One layer's keys and values, (batch, kv heads, slots, head dim). ``ring``: a sliding-window layer
    whose slots hold the last ``slots`` columns, column c in slot c % slots."""

    keys: torch.Tensor
    values: torch.Tensor
    ring: bool

    @property
    def slots(self) -> int:
        return self.keys.shape[2]


@dataclass
class KVCache:
    layers: list[LayerCache]

    @classmethod
    def empty(cls, model: Any, batch: int, capacity: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        config = model.config
        window = getattr(config, "sliding_window", None)
        types = getattr(config, "layer_types", None) or ["full_attention"] * config.num_hidden_layers
        layers = []
        for kind in types:
            ring = kind == "sliding_attention" and bool(window)
            slots = min(int(window or 0), capacity) if ring else capacity
            shape = (batch, config.num_key_value_heads, slots, config.head_dim)
            layers.append(
                LayerCache(
                    torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device), ring
                )
            )
        return cls(layers)

    @property
    def nbytes(self) -> int:
        return sum(2 * layer.keys.numel() * layer.keys.element_size() for layer in self.layers)


def _lora_factors(module, dtype) -> list:
    """(A, B transposed, scale) of each active peft LoRA on a linear layer, in ``dtype``; [] for none."""
    lora_a = getattr(module, "lora_A", None)
    if lora_a is None or module.disable_adapters or module.merged or getattr(module, "lora_variant", None):
        return []
    factors = []
    for name in module.active_adapters:
        if name not in lora_a:
            continue
        b = module.lora_B[name]
        if b.bias is not None:
            raise NotImplementedError("decoding supports LoRA without a bias on lora_B")
        factors.append((lora_a[name].weight.to(dtype), b.weight.to(dtype).t(), float(module.scaling[name])))
    return factors


class _Adapters:
    """The LoRA factors of the attention's linear layers, converted to the activations' dtype once per
    generation rather than at every step (two conversion kernels per layer and token otherwise)."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype
        self.factors: dict[int, list] = {}
        self.joined: dict[int, Any] = {}

    def project(self, module, x, row_scale):
        """The layer's output with each LoRA added as x A B (scaled per token by ``row_scale`` (tokens, 1)
        when the adapter is on for some rows only)."""
        key = id(module)
        if key not in self.factors:
            self.factors[key] = _lora_factors(module, self.dtype)
        factors = self.factors[key]
        if not factors:
            return module(x)
        result = module.base_layer(x)
        for a, b_t, scale in factors:
            low = F.linear(x, a)
            if row_scale is not None:
                low = low * row_scale
            result = torch.addmm(result, low, b_t, alpha=scale)
        return result

    def qkv(self, attention, normed, row_scale):
        """q, k and v as one product (and their adapters as one more): a decoded token's three small
        products and six low-rank ones are launches that cost more than their arithmetic."""
        tokens, head_dim = normed.shape[0], attention.head_dim
        key = id(attention)
        if key not in self.joined:
            self.joined[key] = self._join(attention)
        joined = self.joined[key]
        if joined is None:
            q = self.project(attention.q_proj, normed, row_scale)
            k = self.project(attention.k_proj, normed, row_scale)
            v = self.project(attention.v_proj, normed, row_scale)
        else:
            weight_t, bias, a, b_t, sizes = joined
            out = torch.addmm(bias, normed, weight_t) if bias is not None else normed @ weight_t
            if a is not None:
                low = F.linear(normed, a)
                out = torch.addmm(out, low if row_scale is None else low * row_scale, b_t)
            q, k, v = out.split(sizes, dim=-1)
        return q.view(tokens, -1, head_dim), k.view(tokens, -1, head_dim), v.view(tokens, -1, head_dim)

    def _join(self, attention):
        """(W^T, bias, A, B^T, sizes) of q, k and v side by side, the adapters' B as one block-diagonal
        matrix with their scales in it; None where a projection is not a plain linear layer."""
        projections = [attention.q_proj, attention.k_proj, attention.v_proj]
        bases = [getattr(m, "base_layer", m) for m in projections]
        if any(type(base) is not torch.nn.Linear for base in bases):
            return None
        factors = [_lora_factors(m, self.dtype) if hasattr(m, "lora_A") else [] for m in projections]
        if any(len(f) > 1 for f in factors):
            return None
        sizes = [base.out_features for base in bases]
        weight_t = torch.cat([base.weight for base in bases]).to(self.dtype).t().contiguous()
        biases = [base.bias for base in bases]
        bias = None
        if any(b is not None for b in biases):
            bias = torch.cat(
                [b if b is not None else base.weight.new_zeros(n) for b, base, n in zip(biases, bases, sizes)]
            )
            bias = bias.to(self.dtype)
        if not any(factors):
            return weight_t, bias, None, None, sizes
        a = torch.cat([f[0][0] for f in factors if f])
        b_t = a.new_zeros(a.shape[0], sum(sizes))
        row = column = 0
        for f, n in zip(factors, sizes):
            if f:
                _, block, scale = f[0]
                b_t[row : row + block.shape[0], column : column + n] = block * scale
                row += block.shape[0]
            column += n
        return weight_t, bias, a, b_t, sizes


def _mixture(layer, hidden, row_scale):
    router, experts = layer.mlp.router, layer.mlp.experts
    if hidden.shape[0] * router.top_k <= COMPARED_ROUTING_MAX_ROWS:  # a decode step
        route = fused(route_by_comparison, hidden)
        rows, expert_ids, offsets, inverse, weights, scale = route(
            hidden, router.weight, router.bias, router.top_k, row_scale
        )
        sorted_rows = SortedRows(rows, expert_ids, offsets, inverse, weights, scale, router.top_k)
        return sorted_rows_forward(experts, sorted_rows)
    logits = F.linear(hidden, router.weight, router.bias)
    top_values, top_indices = torch.topk(logits, router.top_k, dim=-1)
    top_weights = torch.softmax(top_values, dim=1, dtype=top_values.dtype)
    scale = None if row_scale is None else row_scale[:, 0]
    return experts_forward(experts, hidden, top_indices, top_weights, fuse_routing=True, lora_row_scale=scale)


def _residual_norm(hidden, delta, weight, eps: float):
    hidden = hidden + delta
    return hidden, _rms_norm(hidden, weight, eps)


def _sink_softmax(scores, allowed, sinks, scale: float):
    """Softmax over each row's scores and its head's sink logit, the sink's own share dropped: a sink is
    one more logit whose value is nothing. scores (B, Hkv, G, S), allowed (B, 1, 1, S), sinks (1, Hkv, G, 1)."""
    wide = (scores.float() * scale).masked_fill(~allowed, float("-inf"))
    sinks = sinks.float()
    top = torch.maximum(wide.amax(-1, keepdim=True), sinks)
    exp = torch.exp(wide - top)
    return (exp / (exp.sum(-1, keepdim=True) + torch.exp(sinks - top))).to(scores.dtype)


def _attend_cache(q, cache: LayerCache, allowed, sinks, scale: float):
    """One new token a row, q (batch, heads, dim), over the whole cache; ``allowed`` (batch, 1, 1, slots)."""
    batch, heads, dim = q.shape
    kv_heads = cache.keys.shape[1]
    grouped = q.view(batch, kv_heads, heads // kv_heads, dim)
    scores = torch.matmul(grouped, cache.keys.transpose(-1, -2))  # B, Hkv, G, S
    probs = fused(_sink_softmax, scores)(scores, allowed, sinks.view(1, kv_heads, -1, 1), scale)
    return torch.matmul(probs, cache.values).reshape(batch, heads * dim)


def _slots(column, pad, slots: int, ring: bool):
    """Where a decode step's token goes in a cache of ``slots`` columns, (1,), and which slots each row may
    attend to, (batch, 1, 1, slots): its own columns up to this one, of those the ring still holds."""
    slot = torch.arange(slots, device=column.device)
    held = column - torch.remainder(column - slot, slots) if ring else slot
    allowed = (held[None, :] >= pad[:, None]) & (held[None, :] <= column)
    at = torch.remainder(column, slots) if ring else column
    return at.view(1), allowed[:, None, None, :]


def _capture_graphs(device: torch.device) -> bool:
    return device.type == "cuda" and os.environ.get("OSS_FINETUNE_CUDA_GRAPHS", "1") != "0"


class Decoder:
    """The model's forward over a KV cache: ``prefill`` the prompts, then ``step`` one token a row."""

    def __init__(
        self,
        model: Any,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        *,
        adapter_rows: Sequence[bool] | None = None,
        cuda_graphs: bool | None = None,
        capacity: int | None = None,
    ):
        _check(prompts, adapter_rows)
        self.inner = _causal_lm(model)
        self.body = self.inner.model
        parameter = next(self.inner.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        self.prompts = [list(p) for p in prompts]
        lengths = [len(p) for p in prompts]
        self.width = max(lengths)
        self.pad = torch.tensor([self.width - n for n in lengths], device=self.device)  # empty columns of each row
        capacity = max(capacity or 0, self.width + max_new_tokens)
        self.capacity = capacity  # columns: prompt plus new tokens
        self.cache = KVCache.empty(self.inner, len(prompts), capacity, self.dtype, self.device)
        self.row_scale = None
        if adapter_rows is not None and not all(adapter_rows):
            self.row_scale = torch.tensor([[float(on)] for on in adapter_rows], dtype=self.dtype, device=self.device)
        self.column = torch.zeros((), dtype=torch.long, device=self.device)  # where the next token goes
        self.next_ids = torch.zeros(len(prompts), dtype=torch.long, device=self.device)
        self.cuda_graphs = _capture_graphs(self.device) if cuda_graphs is None else cuda_graphs
        self._graph: Any = None
        self._graph_logits: torch.Tensor | None = None
        self._eager_steps = 0
        self.adapters = _Adapters(self.dtype)

    def reset(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, adapter_rows: Sequence[bool] | None) -> None:
        """Take new prompts of the same batch size into this decoder's buffers, keeping its cache and its
        captured step: the graph reads these very tensors, so new values are copied into them."""
        _check(prompts, adapter_rows)
        lengths = [len(p) for p in prompts]
        if len(prompts) != self.next_ids.shape[0] or max(lengths) + max_new_tokens > self.capacity:
            raise ValueError("reset needs the same batch size and prompts that fit the cache")
        self.prompts = [list(p) for p in prompts]
        self.width = max(lengths)
        self.pad.copy_(torch.tensor([self.width - n for n in lengths]))
        if (self.row_scale is None) != (adapter_rows is None or all(adapter_rows)):
            raise ValueError("reset cannot switch between one adapter setting and one per row")
        if self.row_scale is not None and adapter_rows is not None:
            self.row_scale.copy_(torch.tensor([[float(on)] for on in adapter_rows]))

    # -- prefill ---------------------------------------------------------------------------------
    def _store_prompt(self, layer: LayerCache, k, v, rows, columns, kept) -> None:
        if layer.ring:
            rows, columns, k, v = rows[kept], columns[kept] % layer.slots, k[kept], v[kept]
        layer.keys[rows, :, columns] = k
        layer.values[rows, :, columns] = v

    @torch.no_grad()
    def prefill(self) -> torch.Tensor:
        """The logits (batch, vocab) of the token after each prompt."""
        device = self.device
        ids = torch.tensor([t for p in self.prompts for t in p], dtype=torch.long, device=device)
        lengths = torch.tensor([len(p) for p in self.prompts], device=device)
        rows = torch.repeat_interleave(torch.arange(len(self.prompts), device=device), lengths)
        cu = torch.zeros(len(self.prompts) + 1, dtype=torch.int32, device=device)
        cu[1:] = torch.cumsum(lengths, 0)
        positions = torch.arange(ids.numel(), device=device) - cu[:-1].long()[rows]
        columns = self.pad[rows] + positions
        ring_slots = min((layer.slots for layer in self.cache.layers if layer.ring), default=0)
        kept = columns >= self.width - ring_slots  # what a window's ring still holds after the prompt
        row_scale = None if self.row_scale is None else self.row_scale[rows]
        hidden = self.body.embed_tokens(ids)
        cos, sin = self.body.rotary_emb(hidden[None], positions[None])

        def attend(attention, cache, q, k, v):
            self._store_prompt(cache, k, v, rows, columns, kept)
            window = attention.sliding_window if cache.ring else None
            return sink_attention(q, k, v, attention.sinks, cu, self.width, attention.scaling, window)

        final = self._layers(hidden, cos[0][:, None, :], sin[0][:, None, :], row_scale, attend)
        self.column.fill_(self.width)
        return self._logits(final[cu[1:].long() - 1])

    def _layers(self, hidden, cos, sin, row_scale, attend):
        """Every layer over tokens ``hidden`` (tokens, hidden), ``attend`` doing the attention proper;
        returns the final normed states. Each residual add is fused with the norm after it."""
        layers = list(self.body.layers)
        norm = layers[0].input_layernorm
        normed = fused(_rms_norm, hidden)(hidden, norm.weight, norm.variance_epsilon)
        for index, (layer, cache) in enumerate(zip(layers, self.cache.layers)):
            attention = layer.self_attn
            q, k, v = self.adapters.qkv(attention, normed, row_scale)
            q, k = fused(_rotate_pair, q)(q, k, cos, sin)
            attended = attend(attention, cache, q, k, v)
            out = self.adapters.project(attention.o_proj, attended.reshape(attended.shape[0], -1), row_scale)
            norm = layer.post_attention_layernorm
            hidden, normed = fused(_residual_norm, hidden)(hidden, out, norm.weight, norm.variance_epsilon)
            mixed = _mixture(layer, normed, row_scale)
            norm = layers[index + 1].input_layernorm if index + 1 < len(layers) else self.body.norm
            hidden, normed = fused(_residual_norm, hidden)(hidden, mixed, norm.weight, norm.variance_epsilon)
        return normed

    # -- one step --------------------------------------------------------------------------------
    def _decode(self) -> torch.Tensor:
        """Same shapes every call: reads ``next_ids`` and ``column``, writes the cache, moves the column."""
        column, pad = self.column, self.pad
        hidden = self.body.embed_tokens(self.next_ids)  # B, hidden
        cos, sin = self.body.rotary_emb(hidden[:, None], (column - pad)[:, None])  # B, 1, dim/2
        where: dict = {}  # per cache shape: the slot this token goes to, and the slots each row may see
        for cache in self.cache.layers:
            key = (cache.ring, cache.slots)
            if key not in where:
                where[key] = fused(_slots, hidden)(column, pad, cache.slots, cache.ring)

        def attend(attention, cache, q, k, v):
            at, allowed = where[(cache.ring, cache.slots)]
            cache.keys.index_copy_(2, at, k[:, :, None])
            cache.values.index_copy_(2, at, v[:, :, None])
            return _attend_cache(q, cache, allowed, attention.sinks, attention.scaling)

        final = self._layers(hidden, cos, sin, self.row_scale, attend)
        self.column.add_(1)
        return self._logits(final)

    def _logits(self, final):
        """The output layer on the final states, as float32 logits (batch, vocab)."""
        head = self.inner.lm_head
        if self.device.type == "cpu" and type(head) is torch.nn.Linear and head.bias is None:
            live = _live_rows(head.weight)
            if live is not None:  # most rows zero (the embedded default): their logits are 0
                compact, _, tokens = live
                logits = final.new_zeros(final.shape[0], head.out_features, dtype=torch.float32)
                logits[:, tokens] = (final @ compact.t()).float()
                return logits
        # An adapter on the output layer applies per row too, or a row without the adapter would get its logits.
        return self.adapters.project(head, final, self.row_scale).float()

    @torch.no_grad()
    def step(self, next_ids: torch.Tensor) -> torch.Tensor:
        """Feed one token a row (batch,); the logits of the token after it."""
        self.next_ids.copy_(next_ids)
        if self._graph is not None:
            self._graph.replay()
            return self._graph_logits.clone()  # type: ignore[union-attr]
        if self.cuda_graphs and self._eager_steps >= 1:  # the eager step before warmed every kernel up
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph):
                    logits = self._decode()
            except RuntimeError as error:
                self.cuda_graphs = False
                log.warning("decoding without CUDA graphs: capturing the decode step failed (%s)", error)
            else:
                self._graph, self._graph_logits = graph, logits
                graph.replay()
                return logits.clone()
        self._eager_steps += 1
        return self._decode()


def _check(prompts: Sequence[Sequence[int]], adapter_rows: Sequence[bool] | None) -> None:
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    if adapter_rows is not None and len(adapter_rows) != len(prompts):
        raise ValueError(f"adapter_rows has {len(adapter_rows)} entries for {len(prompts)} prompts")


# A kept decoder serves any call whose prompt plus new tokens fit its cache: lengths are rounded up to
# this, so a chat's turns and an evaluation's batches reuse one captured step.
CACHE_COLUMNS = 256


def _weights_state(inner) -> tuple:
    """What the captured step baked in: which tensors the weights are and how often they were changed
    in place (an optimizer step, a loaded adapter), and each LoRA layer's on/off state."""
    weights = tuple((id(t), t.data_ptr(), t._version) for t in inner.parameters())
    switches = tuple(
        (m.disable_adapters, tuple(m.active_adapters), m.merged) for m in inner.modules() if hasattr(m, "lora_A")
    )
    return weights, switches


def _decoder_for(model, prompts, max_new_tokens, adapter_rows) -> Decoder:
    """A decoder for this call: on CUDA, the one kept from the previous call when nothing it captured has
    changed (capturing costs about as much as fifty decoded tokens); otherwise a new one, then kept."""
    inner = _causal_lm(model)
    device = next(inner.parameters()).device
    if not _capture_graphs(device):
        return Decoder(model, prompts, max_new_tokens, adapter_rows=adapter_rows)
    width = max((len(p) for p in prompts), default=0)
    capacity = -(-(width + max_new_tokens) // CACHE_COLUMNS) * CACHE_COLUMNS
    per_row = adapter_rows is not None and not all(adapter_rows)
    key = (len(prompts), capacity, per_row, _weights_state(inner))
    kept = getattr(inner, "_kept_decoder", None)
    if kept is not None and kept[0] == key:
        decoder = kept[1]
        decoder.reset(prompts, max_new_tokens, adapter_rows)
        return decoder
    release_decoder(model)
    decoder = Decoder(model, prompts, max_new_tokens, adapter_rows=adapter_rows, capacity=capacity)
    inner._kept_decoder = (key, decoder)
    return decoder


def release_decoder(model) -> None:
    """Free the decoder kept on ``model`` (its KV cache, joined weights and captured step), e.g. before
    training, whose memory plan does not count it."""
    inner = _causal_lm(model)
    if getattr(inner, "_kept_decoder", None) is not None:
        inner._kept_decoder = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


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
    adapter_rows: Sequence[bool] | None = None,
) -> list[list[int]]:
    """New tokens for each prompt, each row cut after its first stop token. Greedy unless ``temperature``
    > 0 (then top-p sampling from a generator seeded by ``seed``). ``on_token(row, id)`` streams them.
    ``adapter_rows``: per row, whether the LoRA adapter applies (default: as the model stands)."""
    decoder = _decoder_for(model, prompts, max_new_tokens, adapter_rows)
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
    finished = [False] * rows
    if max_new_tokens <= 0:
        return out
    on_gpu = decoder.device.type == "cuda"
    # The tokens come back through pinned memory on their own event, so that reading them waits for them
    # and not for the next step queued behind them: the GPU decodes while Python streams.
    landed = torch.empty((2, rows), dtype=torch.long, pin_memory=True) if on_gpu else None
    logits = decoder.prefill()
    for produced in range(max_new_tokens):
        chosen = _choose(logits, temperature, top_p, generator)
        both = torch.stack([chosen, torch.isin(chosen, stops).long()])
        if landed is not None:
            landed.copy_(both, non_blocking=True)
            copied = torch.cuda.Event()
            copied.record()
        if produced + 1 < max_new_tokens:
            logits = decoder.step(chosen)
        if landed is not None:
            copied.synchronize()
            tokens, stopped = landed.tolist()
        else:
            tokens, stopped = both.tolist()
        for row, (token, stop) in enumerate(zip(tokens, stopped)):
            if finished[row]:
                continue
            out[row].append(token)
            if on_token is not None:
                on_token(row, token)
            finished[row] = bool(stop)
        if all(finished):
            break
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
