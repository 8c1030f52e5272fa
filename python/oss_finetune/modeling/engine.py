"""Our training engine for GPT-OSS: the same model and adapter, a faster way through them.

The Trainer can run a training step two ways. ``transformers`` calls the Hugging Face model as it
is (eager attention with sinks, padded micro-batches). ``fast`` (this module) walks the same
modules and parameters itself, so a saved adapter is the same peft adapter either way, but:

- **Packing without padding.** The conversations of one optimizer step are laid end to end in
  micro-batches of up to ``pack_tokens`` tokens. Each keeps its own positions (rope restarts at 0)
  and attention never crosses from one conversation into another, so the loss and gradients equal
  the padded ones. The mixture-of-experts weights (most of the model's bytes) are then read once
  per micro-batch of thousands of tokens instead of once per conversation.
- **Attention with sinks on the flash kernel.** GPT-OSS adds one learned "sink" logit per head to
  the softmax. With the normal output ``O`` and log-sum-exp ``L`` of flash attention, the sink
  output is ``O * sigmoid(L - sink)``. The backward reuses the flash backward unchanged by handing
  it ``dO * s`` and the sink-scaled output in place of ``O`` (``s = sigmoid(L - sink)``): the
  kernel's row term ``rowsum(dO * O)`` then carries the sink's share, which makes the gradients
  exact; the sink's own gradient is ``-sum((1 - s) * rowsum(dO * O'))``. Sliding-window layers use
  the kernel's window. Nothing of size sequence x sequence is stored.
- **Experts as grouped matrix products**, with LoRA on the experts applied as two thin grouped
  products (x A) B instead of rebuilding every expert's weight each forward as peft does.
- **The output layer and cross-entropy in chunks**, only at the trained (loss-mask) positions, with
  the gradient computed in the same pass, so the 201,088-wide logits never exist for more than one
  chunk at a time. A LoRA on the output layer is trained in the same pass.

On a CPU the attention uses a plain reference of the same two kernel calls, which is what the tests
compare with the eager model; on CUDA it uses PyTorch's flash-attention operators.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from . import auto
from .experts import experts_forward, has_expert_lora  # noqa: F401 - the engine's public surface
from .kernels import fused, fuses_kernels, wide  # noqa: F401

IGNORE = -100


# -- packing ---------------------------------------------------------------------------------------
@dataclass
class PackedBatch:
    """Conversations laid end to end: one row of ``tokens`` tokens, no padding."""

    input_ids: torch.Tensor  # (1, T) long
    position_ids: torch.Tensor  # (1, T) long, restarting at 0 for each conversation
    cu_seqlens: torch.Tensor  # (n + 1,) int32: where each conversation starts, then T
    max_length: int  # the longest conversation
    targets: torch.Tensor  # (T,) long: the next token where the loss mask is on, else IGNORE
    trained: int  # how many targets are not IGNORE
    conversations: int

    @property
    def tokens(self) -> int:
        return int(self.input_ids.shape[1])

    def to(self, device: torch.device) -> PackedBatch:
        return PackedBatch(
            self.input_ids.to(device),
            self.position_ids.to(device),
            self.cu_seqlens.to(device),
            self.max_length,
            self.targets.to(device),
            self.trained,
            self.conversations,
        )


def pack(examples: Sequence, pack_tokens: int) -> list[PackedBatch]:
    """Group examples (each with ``input_ids`` and ``trained``, a per-token loss mask) in order into
    micro-batches of at most ``pack_tokens`` tokens; a longer example gets a micro-batch of its own."""
    groups: list[list] = []
    size = 0
    for example in examples:
        length = len(example.input_ids)
        if groups and size + length <= pack_tokens:
            groups[-1].append(example)
            size += length
        else:
            groups.append([example])
            size = length
    return [_pack_group(group) for group in groups]


def _pack_group(group: Sequence) -> PackedBatch:
    ids: list[int] = []
    positions: list[int] = []
    targets: list[int] = []
    starts = [0]
    for example in group:
        n = len(example.input_ids)
        ids.extend(example.input_ids)
        positions.extend(range(n))
        # Position i predicts token i + 1 of the same conversation, where that token is trained.
        following = list(example.input_ids[1:]) + [IGNORE]
        mask = list(example.trained[1:]) + [False]
        targets.extend(t if m else IGNORE for t, m in zip(following, mask))
        starts.append(starts[-1] + n)
    target_tensor = torch.tensor(targets, dtype=torch.long)
    return PackedBatch(
        input_ids=torch.tensor([ids], dtype=torch.long),
        position_ids=torch.tensor([positions], dtype=torch.long),
        cu_seqlens=torch.tensor(starts, dtype=torch.int32),
        max_length=max(len(e.input_ids) for e in group),
        targets=target_tensor,
        trained=int((target_tensor != IGNORE).sum()),
        conversations=len(group),
    )


# -- attention with sinks --------------------------------------------------------------------------
def flash_available(tensor: torch.Tensor) -> bool:
    return (
        tensor.is_cuda
        and tensor.dtype in (torch.bfloat16, torch.float16)
        and hasattr(torch.ops.aten, "_flash_attention_forward")
    )


def _window_args(window: int | None) -> dict:
    # HF's sliding mask keeps key j for query i when i - window < j <= i: window - 1 keys to the left.
    if window is None:
        return {}
    return {"window_size_left": window - 1, "window_size_right": 0}


def _flash_forward(q, k, v, cu, max_length, scale, window):
    out, lse, rng_state, unused, _ = torch.ops.aten._flash_attention_forward(
        q, k, v, cu, cu, max_length, max_length, 0.0, True, False, scale=scale, **_window_args(window)
    )
    return out, lse, (rng_state, unused)


def _flash_backward(dout, q, k, v, out, lse, cu, max_length, scale, window, state):
    rng_state, unused = state
    dq, dk, dv = torch.ops.aten._flash_attention_backward(
        dout,
        q,
        k,
        v,
        out,
        lse,
        cu,
        cu,
        max_length,
        max_length,
        0.0,
        True,
        rng_state,
        unused,
        scale=scale,
        **_window_args(window),
    )
    return dq, dk, dv


def _segments(cu: torch.Tensor):
    bounds = cu.tolist()
    return list(zip(bounds[:-1], bounds[1:]))


def _reference_mask(n: int, window: int | None, device) -> torch.Tensor:
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= j > i - window
    return allowed


def _reference_forward(q, k, v, cu, max_length, scale, window):
    """What the flash forward returns (output, log-sum-exp of shape heads x tokens), in plain torch."""
    groups = q.shape[1] // k.shape[1]
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[1], q.shape[0], dtype=wide(q).dtype, device=q.device)
    for start, end in _segments(cu):
        qs = wide(q[start:end])
        ks = wide(k[start:end]).repeat_interleave(groups, dim=1)
        vs = wide(v[start:end]).repeat_interleave(groups, dim=1)
        scores = torch.einsum("thd,shd->hts", qs, ks) * scale
        scores = scores.masked_fill(~_reference_mask(end - start, window, q.device), float("-inf"))
        seg_lse = torch.logsumexp(scores, dim=-1)
        probs = torch.exp(scores - seg_lse[..., None])
        out[start:end] = torch.einsum("hts,shd->thd", probs, vs).to(q.dtype)
        lse[:, start:end] = seg_lse
    return out, lse, None


def _reference_backward(dout, q, k, v, out, lse, cu, max_length, scale, window, state):
    """The flash backward's arithmetic: probabilities from the saved log-sum-exp, and the row term
    rowsum(dout * out) taken from the ``out`` it is given."""
    groups = q.shape[1] // k.shape[1]
    dq, dk, dv = (torch.zeros_like(wide(t)) for t in (q, k, v))
    for start, end in _segments(cu):
        qs = wide(q[start:end])
        ks = wide(k[start:end]).repeat_interleave(groups, dim=1)
        vs = wide(v[start:end]).repeat_interleave(groups, dim=1)
        do = wide(dout[start:end])
        scores = torch.einsum("thd,shd->hts", qs, ks) * scale
        scores = scores.masked_fill(~_reference_mask(end - start, window, q.device), float("-inf"))
        probs = torch.exp(scores - lse[:, start:end, None])
        dprobs = torch.einsum("thd,shd->hts", do, vs)
        row = (do * wide(out[start:end])).sum(-1).t()  # heads x tokens
        dscores = probs * (dprobs - row[..., None])
        dq[start:end] = torch.einsum("hts,shd->thd", dscores, ks) * scale
        dk_full = torch.einsum("hts,thd->shd", dscores, qs) * scale
        dv_full = torch.einsum("hts,thd->shd", probs, do)
        n, h, d = dk_full.shape
        dk[start:end] = dk_full.view(n, h // groups, groups, d).sum(2)
        dv[start:end] = dv_full.view(n, h // groups, groups, d).sum(2)
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class _SinkAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, sinks, cu, max_length, scale, window):
        kernels = (_flash_forward, _flash_backward) if flash_available(q) else (_reference_forward, _reference_backward)
        out, lse, state = kernels[0](q, k, v, cu, max_length, scale, window)
        keep = torch.sigmoid(lse - sinks.to(lse.dtype)[:, None])  # heads x tokens: the share not taken by the sink
        sunk = (wide(out) * keep.t()[..., None]).to(q.dtype)
        ctx.save_for_backward(q, k, v, sunk, lse, keep, cu)
        ctx.rest = (max_length, scale, window, state, kernels[1], sinks.dtype)
        return sunk

    @staticmethod
    def backward(ctx, dsunk):
        q, k, v, sunk, lse, keep, cu = ctx.saved_tensors
        max_length, scale, window, state, backward, sink_dtype = ctx.rest
        dsunk = dsunk.contiguous()
        dout = (wide(dsunk) * keep.t()[..., None]).to(q.dtype)
        dq, dk, dv = backward(dout, q, k, v, sunk, lse, cu, max_length, scale, window, state)
        dsinks = None
        if ctx.needs_input_grad[3]:
            row = (wide(dsunk) * wide(sunk)).sum(-1).t()  # heads x tokens
            dsinks = (-(1.0 - keep) * row).sum(-1).to(sink_dtype)
        return dq, dk, dv, dsinks, None, None, None, None


def sink_attention(q, k, v, sinks, cu_seqlens, max_length: int, scale: float, window: int | None = None):
    """Causal attention with one sink logit per head over packed conversations.

    q: (tokens, heads, head_dim); k, v: (tokens, kv_heads, head_dim); sinks: (heads,);
    cu_seqlens: int32 starts of each conversation then the total; window: the sliding window or None.
    """
    return _SinkAttention.apply(
        q.contiguous(), k.contiguous(), v.contiguous(), sinks, cu_seqlens, int(max_length), float(scale), window
    )


# -- experts ---------------------------------------------------------------------------------------


def _rms_norm(x, weight, eps: float):
    wide = x.float()
    wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * wide).to(x.dtype)


def _rotate_pair(q, k, cos, sin):
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x, cos, sin):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


# -- the model -------------------------------------------------------------------------------------
def _linear(module, x):
    """A linear layer, with its peft LoRA (if any) computed in the activations' dtype: peft would cast
    the activations to the adapter's float32 instead, a copy and a slow float32 product per layer."""
    lora_a = getattr(module, "lora_A", None)
    if lora_a is None or module.disable_adapters or module.merged or getattr(module, "lora_variant", None):
        return module(x)
    result = module.base_layer(x)
    for name in module.active_adapters:
        if name not in lora_a:
            continue
        a, b = lora_a[name], module.lora_B[name]
        low = F.linear(module.lora_dropout[name](x), a.weight.to(x.dtype))
        result = (
            result
            + F.linear(low, b.weight.to(x.dtype), None if b.bias is None else b.bias.to(x.dtype)) * module.scaling[name]
        )
    return result


def _layer(layer, hidden, cos, sin, cu, max_length):
    tokens = hidden.shape[0]
    attention = layer.self_attn
    norm = layer.input_layernorm
    normed = fused(_rms_norm, hidden)(hidden, norm.weight, norm.variance_epsilon)
    head_dim = attention.head_dim
    q = _linear(attention.q_proj, normed).view(tokens, -1, head_dim)
    k = _linear(attention.k_proj, normed).view(tokens, -1, head_dim)
    v = _linear(attention.v_proj, normed).view(tokens, -1, head_dim)
    q, k = fused(_rotate_pair, hidden)(q, k, cos, sin)
    attended = sink_attention(q, k, v, attention.sinks, cu, max_length, attention.scaling, attention.sliding_window)
    hidden = hidden + _linear(attention.o_proj, attended.reshape(tokens, -1))
    norm = layer.post_attention_layernorm
    normed = fused(_rms_norm, hidden)(hidden, norm.weight, norm.variance_epsilon)
    router = layer.mlp.router
    logits = F.linear(normed, router.weight, router.bias)
    top_values, top_indices = torch.topk(logits, router.top_k, dim=-1)
    top_weights = torch.softmax(top_values, dim=1, dtype=top_values.dtype)
    return hidden + experts_forward(layer.mlp.experts, normed, top_indices, top_weights)


def _causal_lm(model):
    """The GptOssForCausalLM under a peft wrapper (the LoRA layers stay injected in it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def supports(model) -> bool:
    """Whether ``model`` is a GPT-OSS causal LM this engine can walk."""
    inner = _causal_lm(model)
    return getattr(getattr(inner, "config", None), "model_type", None) == "gpt_oss" and hasattr(inner, "lm_head")


def final_hidden(model, batch: PackedBatch, *, gradient_checkpointing: bool = False) -> torch.Tensor:
    """The last hidden states (tokens, hidden) of a packed batch, through the model's own modules."""
    inner = _causal_lm(model)
    body = inner.model
    hidden = body.embed_tokens(batch.input_ids)  # 1, T, H
    cos, sin = body.rotary_emb(hidden, batch.position_ids)
    cos, sin = cos[0][:, None, :], sin[0][:, None, :]
    hidden = hidden[0]
    recompute = gradient_checkpointing and torch.is_grad_enabled()
    for layer in body.layers:
        # A layer sharded by FSDP (training.sharding) carries its own entry, which gathers its weights first.
        run = getattr(layer, SHARDED_LAYER, None)
        if run is not None:
            hidden = run(hidden, cos, sin, batch.cu_seqlens, batch.max_length, recompute)
        else:
            hidden = run_layer(layer, hidden, cos, sin, batch.cu_seqlens, batch.max_length, recompute)
    return fused(_rms_norm, hidden)(hidden, body.norm.weight, body.norm.variance_epsilon)


# The method name under which a sharded layer is run (training.sharding registers it with FSDP).
SHARDED_LAYER = "fast_engine_layer"


def run_layer(layer, hidden, cos, sin, cu, max_length: int, recompute: bool = False):
    """One decoder layer of a packed batch; with ``recompute`` its activations are recomputed in the backward."""
    if recompute:
        return checkpoint(_layer, layer, hidden, cos, sin, cu, max_length, use_reentrant=False)
    return _layer(layer, hidden, cos, sin, cu, max_length)


# -- output layer and loss -------------------------------------------------------------------------
def _chunk_rows(vocab: int, budget_bytes: int = 1 << 28) -> int:
    # Two float32 (rows x vocab) buffers live at once: the logits and their gradient.
    return max(64, budget_bytes // (8 * vocab))


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of ``hidden @ weight.t()``, plus the LoRA ``scale * hidden @ a.t() @ b.t()``
    when ``a`` and ``b`` are given, one chunk of rows at a time, with the gradients of ``hidden``, ``a``
    and ``b`` computed in the same pass."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, rows, a=None, b=None, scale=1.0, others=0):
        """``others``: that many more output rows, all zero, left out of ``weight``: each has logit 0, so
        together they add others * e^0 to the softmax's sum; a target of -1 is one of them."""
        lora = a is not None and b is not None
        # A rank of a third of the width or more: one product with the merged weight, whose gradient then
        # gives a's and b's, costs less than the low-rank pair beside the weight (3 products against 2 + 3r/width).
        merged = lora and 3 * a.shape[0] >= a.shape[1]
        if merged:
            weight = torch.addmm(wide(weight), wide(b), wide(a), alpha=scale)
        # The low-rank pair in the activations' dtype, as _linear computes it.
        pair = (a.to(hidden.dtype), b.to(hidden.dtype)) if lora and not merged else None
        grad_hidden = ctx.needs_input_grad[0]
        grad_lora = lora and (ctx.needs_input_grad[4] or ctx.needs_input_grad[5])
        grad = torch.empty_like(hidden) if grad_hidden else None
        grad_weight = torch.zeros_like(weight) if merged and grad_lora else None
        grad_a = torch.zeros_like(a, dtype=wide(a[:0]).dtype) if grad_lora and not merged else None
        grad_b = torch.zeros_like(b, dtype=wide(b[:0]).dtype) if grad_lora and not merged else None
        total = torch.zeros((), dtype=wide(hidden[:0]).dtype, device=hidden.device)
        # One logits buffer for every chunk: on the CPU a fresh one per chunk costs more in page faults
        # than its product does.
        buffer = torch.empty(min(rows, hidden.shape[0]), weight.shape[0], dtype=total.dtype, device=hidden.device)
        for start in range(0, hidden.shape[0], rows):
            part = hidden[start : start + rows]
            if merged:
                part = wide(part)
            wanted = targets[start : start + rows]
            logits = buffer[: part.shape[0]]
            if part.dtype == logits.dtype and weight.dtype == logits.dtype:
                torch.mm(part, weight.t(), out=logits)
            else:
                logits.copy_(part @ weight.t())
            low = None
            if pair is not None:
                low = part @ pair[0].t()
                logits.add_(wide(low @ pair[1].t()), alpha=scale)
            if others:
                listed = wanted >= 0
                picked = torch.where(listed, logits.gather(1, wanted.clamp(min=0)[:, None])[:, 0], 0.0)
            else:
                picked = logits.gather(1, wanted[:, None])[:, 0]
            top = logits.amax(dim=-1, keepdim=True)
            if others:
                top = top.clamp(min=0.0)  # the left-out rows' logit, 0, may be the largest
            logits.sub_(top).exp_()
            sums = logits.sum(dim=-1, keepdim=True)
            if others:
                sums += others * torch.exp(-top)
            total += (top[:, 0] + sums[:, 0].log() - picked).sum()
            if grad is None and not grad_lora:
                continue
            # logits becomes their gradient: the softmax less the one-hot target.
            logits.div_(sums)
            if others:  # a target among the left-out rows has no column here, and no gradient
                logits.scatter_add_(1, wanted.clamp(min=0)[:, None], -listed.to(logits.dtype)[:, None])
            else:
                logits[torch.arange(len(wanted), device=logits.device), wanted] -= 1.0
            dlogits = logits.to(weight.dtype)
            if grad is not None:
                into = grad[start : start + rows]
                into.copy_(dlogits @ weight)
                if pair is not None:
                    into.add_((dlogits @ pair[1]) @ pair[0], alpha=scale)
            if grad_weight is not None:
                grad_weight.addmm_(dlogits.t(), part)
            elif grad_a is not None and grad_b is not None and pair is not None and low is not None:
                grad_b.addmm_(logits.t(), wide(low), alpha=scale)
                grad_a.addmm_(wide(dlogits @ pair[1]).t(), wide(part), alpha=scale)
        del buffer
        if grad_weight is not None:
            grad_a = (wide(b).t() @ grad_weight).mul_(scale)
            grad_b = (grad_weight @ wide(a).t()).mul_(scale)
        ctx.save_for_backward(grad, grad_a, grad_b)
        return total

    @staticmethod
    def backward(ctx, dtotal):
        grad, grad_a, grad_b = ctx.saved_tensors
        scaled = [None if g is None else (g * dtotal.to(g.dtype)) for g in (grad, grad_a, grad_b)]
        return scaled[0], None, None, None, scaled[1], scaled[2], None, None


def _head_lora(lm_head: Any) -> tuple[torch.Tensor, torch.Tensor, float] | None | Literal[False]:
    """The output layer's own LoRA as (a, b, scale) when one plain peft adapter is active on it; None
    when it has none; False when it has one this engine does not read (dropout, a bias, a variant,
    several adapters), for which the plain path runs the layer as peft does."""
    lora_a = getattr(lm_head, "lora_A", None)
    if lora_a is None or lm_head.disable_adapters or lm_head.merged:
        return None
    active = [name for name in lm_head.active_adapters if name in lora_a]
    if not active:
        return None
    name = active[0]
    b = lm_head.lora_B[name]
    plain = (
        len(active) == 1
        and isinstance(lm_head.lora_dropout[name], torch.nn.Identity)
        and b.bias is None
        and not getattr(lm_head, "lora_variant", {}).get(name)
        and not getattr(lm_head, "fan_in_fan_out", False)
    )
    return (lora_a[name].weight, b.weight, float(lm_head.scaling[name])) if plain else False


def _live_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """For a frozen output layer most of whose rows are exactly zero (a model trained on part of the
    vocabulary, as the embedded default is: 2,938 of 201,088 tokens), its other rows, each token's row
    among them (-1 for a zero row) and the tokens of those rows; None otherwise. Zero rows give logit 0
    and no gradient, so the loss can count them without computing them. Kept on the tensor until it
    changes."""
    if type(weight) not in (torch.Tensor, torch.nn.Parameter) or weight.device.type == "meta":
        return None  # a sharded (DTensor) or not yet loaded weight: computed as it is
    kept = getattr(weight, "_oss_live_rows", None)
    if kept is not None and kept[0] == (weight.data_ptr(), weight._version):
        return kept[1]
    with torch.no_grad():
        nonzero = torch.linalg.vector_norm(weight, ord=float("inf"), dim=1) != 0  # no weight-sized temporary
        live = None
        if 2 * int(nonzero.sum()) <= weight.shape[0]:
            index = nonzero.nonzero()[:, 0]
            position = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
            position[index] = torch.arange(index.numel(), device=weight.device)
            live = (weight.index_select(0, index), position, index)
    weight._oss_live_rows = ((weight.data_ptr(), weight._version), live)  # type: ignore[attr-defined]
    return live


def output_loss_sum(hidden: torch.Tensor, lm_head: torch.nn.Module, targets: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy of the trained positions (targets != IGNORE), logits one chunk at a time;
    a LoRA on the output layer is trained in the same pass."""
    keep = targets != IGNORE
    selected = hidden[keep]
    wanted = targets[keep]
    count = int(wanted.numel())
    if count == 0:
        return hidden.sum() * 0.0, 0
    base = getattr(lm_head, "base_layer", lm_head)
    weight = cast(torch.Tensor, base.weight)
    lora = _head_lora(lm_head)
    if lora is False or weight.requires_grad or getattr(base, "bias", None) is not None:
        # A trained output layer needs its own gradient; the plain path gives it.
        return F.cross_entropy(lm_head(selected).float(), wanted, reduction="sum"), count
    if lora is None:
        live = _live_rows(weight)
        if live is not None:
            compact, position, _ = live
            others = weight.shape[0] - compact.shape[0]
            rows = _chunk_rows(compact.shape[0])
            return _ChunkedCrossEntropy.apply(selected, compact, position[wanted], rows, None, None, 1.0, others), count
        return _ChunkedCrossEntropy.apply(selected, weight, wanted, _chunk_rows(weight.shape[0])), count
    rows = _chunk_rows(weight.shape[0])
    return _ChunkedCrossEntropy.apply(selected, weight, wanted, rows, *lora), count


def loss_sum(model, batch: PackedBatch, *, gradient_checkpointing: bool = False) -> tuple[torch.Tensor, int]:
    """Summed cross-entropy over the trained tokens of one packed micro-batch, and how many there were."""
    hidden = final_hidden(model, batch, gradient_checkpointing=gradient_checkpointing)
    return output_loss_sum(hidden, _causal_lm(model).lm_head, batch.targets)


def default_pack_tokens(gradient_checkpointing: bool, experts_lora: bool = False) -> int:
    """The pack size when the config leaves it open (decided in auto.py)."""
    return auto.pack_tokens(None, gradient_checkpointing=gradient_checkpointing, expert_lora=experts_lora)
