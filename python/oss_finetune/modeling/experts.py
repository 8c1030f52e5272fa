"""GPT-OSS' mixture-of-experts layer as grouped matrix products, with LoRA on the experts as two
thin grouped products (x A) B instead of the expert weights rebuilt every forward as peft does.

An expert stack that keeps its weights in another form (``mxfp4.Mxfp4Experts``) computes its own
products through ``grouped_product(rows, name, offsets)``; everything else here is the same for it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from . import row_kernels
from .kernels import fused, grouped_mm, wide


def _hf_apply_gate():
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    return GptOssExperts._apply_gate


_HF_APPLY_GATE = _hf_apply_gate()


def _expert_lora(experts):
    """The experts module under any peft ParamWrappers, and per wrapped parameter its LoRA factors
    as (experts, in, r) and (experts, r, out) with the scale, when an adapter is active."""
    factors = {}
    module = experts
    while hasattr(module, "parameter_name") and hasattr(module, "lora_A"):
        active = [a for a in module.active_adapters if a in module.lora_A]
        if active and not module.disable_adapters and not module.merged:
            if len(active) > 1 or getattr(module, "_did_swap_in_out_features", False):
                raise NotImplementedError("the fast engine supports one active adapter on the experts")
            name = active[0]
            e = module.num_experts
            a = module.lora_A[name].weight  # (r * experts, in)
            b = module.lora_B[name].weight  # (out, r * experts)
            a = a.view(e, -1, a.shape[-1]).transpose(1, 2)  # experts, in, r
            b = b.view(b.shape[0], -1, e).permute(2, 1, 0)  # experts, r, out
            factors[module.parameter_name] = (a, b, module.scaling[name])
        module = module.base_layer
    return module, factors


def _low_rank(x, offsets, lora):
    a, b, scale = lora
    a, b = a.to(x.dtype), b.to(x.dtype)
    if x.is_cuda:
        # The grouped GEMM wants 16-byte strides: a rank of 4 in bf16 is 8 bytes, so pad it with zeros.
        extra = -a.shape[-1] % (16 // x.element_size())
        if extra:
            a, b = F.pad(a, (0, extra)), F.pad(b, (0, 0, 0, extra))
    low = grouped_mm(x, a.contiguous(), offsets)
    return scale * grouped_mm(low, b.contiguous(), offsets)


def _bias_and_gate(gate_up, bias, expert_ids, alpha: float, limit: float):
    """Each row's expert bias, then GPT-OSS' clamped SwiGLU over interleaved (gate, up) columns."""
    gate_up = gate_up + bias[expert_ids]
    gate, up = gate_up[..., ::2], gate_up[..., 1::2]
    gate = gate.clamp(max=limit)
    up = up.clamp(min=-limit, max=limit)
    return (up + 1) * (gate * torch.sigmoid(gate * alpha))


def _bias_weight_and_sum(down, bias, expert_ids, weights, inverse, top_k: int):
    """Each row's expert bias and router weight, back in token order, the top_k rows of a token summed."""
    rows = (down + bias[expert_ids]) * weights[:, None].to(down.dtype)
    restored = rows[inverse]
    return wide(restored.view(-1, top_k, restored.shape[-1])).sum(1).to(down.dtype)


def _route(flat: torch.Tensor, num_experts: int):
    """The (token, expert) rows sorted by expert: expert of each sorted row, the order, its inverse, and
    where each expert's rows end."""
    expert_ids, order = torch.sort(flat, stable=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    # Counted by scatter rather than bincount, whose output size depends on the data (a GPU sync).
    counts = torch.zeros(num_experts, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    return expert_ids, order, inverse, torch.cumsum(counts, 0).to(torch.int32)


# Below this many (token, expert) rows, a stack kept in another form computes row by row from just the
# experts chosen (``row_product``) instead of converting whole stacks: what one decoded token needs.
ROW_PRODUCT_MAX_ROWS = 16


class SortedRows(NamedTuple):
    """The (token, expert) rows of a batch sorted by expert: their inputs, experts, where each expert's
    rows end, the inverse order (back to token order), router weights and adapter scales, and top_k."""

    hidden: torch.Tensor
    expert_ids: torch.Tensor
    offsets: torch.Tensor
    inverse: torch.Tensor
    weights: torch.Tensor
    lora_row_scale: torch.Tensor | None
    top_k: int


def experts_forward(
    experts,
    x: torch.Tensor,
    top_indices: torch.Tensor,
    top_weights: torch.Tensor,
    *,
    fuse: bool = True,
    fuse_routing: bool = False,
    lora_row_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """GptOssExperts (possibly wrapped by peft) on tokens x (tokens, hidden) with the router's choice.

    ``fuse=False`` keeps the elementwise steps uncompiled; ``fuse_routing`` compiles the sorting of rows
    by expert too; ``lora_row_scale`` (tokens,) scales the adapter's share per token (0 = the base model
    for that row).
    """
    top_k = top_indices.shape[1]
    route = fused(_route, x) if fuse_routing else _route
    # peft's wrappers carry the stack's num_experts; the stack itself is unwrapped once, below.
    expert_ids, order, inverse, offsets = route(top_indices.reshape(-1), experts.num_experts)
    source = order // top_k
    row_scale = None if lora_row_scale is None else lora_row_scale[source][:, None]
    rows = SortedRows(x[source], expert_ids, offsets, inverse, top_weights.reshape(-1)[order], row_scale, top_k)
    return sorted_rows_forward(experts, rows, fuse=fuse)


def sorted_rows_forward(experts, rows: SortedRows, *, fuse: bool = True) -> torch.Tensor:
    """The experts on rows already sorted by expert; (tokens, hidden) in token order."""
    base, lora = _expert_lora(experts)
    own_product = getattr(base, "grouped_product", None)
    if own_product is None and type(base)._apply_gate is not _HF_APPLY_GATE:
        raise NotImplementedError("the fast engine knows GPT-OSS' own expert activation only")
    expert_ids, offsets, x = rows.expert_ids, rows.offsets, rows.hidden
    few = expert_ids.numel() <= ROW_PRODUCT_MAX_ROWS
    by_row = own_product is not None and hasattr(base, "row_product") and few
    dense_by_row = own_product is None and few and row_kernels.available(x, dense=True)

    def product(hidden, name):
        if by_row:
            return base.row_product(hidden, name, expert_ids)
        if dense_by_row:
            out = row_kernels.try_rows(row_kernels.dense_rows, hidden, getattr(base, name), expert_ids)
            if out is not None:
                return out
        if own_product is not None:
            return own_product(hidden, name, offsets)
        return grouped_mm(hidden, getattr(base, name), offsets)

    def low_rank(hidden, name):
        extra = _low_rank(hidden, offsets, lora[name])
        return extra if rows.lora_row_scale is None else extra * rows.lora_row_scale

    maybe_fused = (lambda fn: fused(fn, x)) if fuse else (lambda fn: fn)
    gate_up = product(x, "gate_up_proj")
    if "gate_up_proj" in lora:
        gate_up = gate_up + low_rank(x, "gate_up_proj")
    gated = maybe_fused(_bias_and_gate)(
        gate_up, base.gate_up_proj_bias, expert_ids, float(base.alpha), float(base.limit)
    )
    down = product(gated, "down_proj")
    if "down_proj" in lora:
        down = down + low_rank(gated, "down_proj")
    return maybe_fused(_bias_weight_and_sum)(
        down, base.down_proj_bias, expert_ids, rows.weights, rows.inverse, rows.top_k
    )


# Up to this many (token, expert) rows the router's choice is made by comparing every pair of logits
# and every pair of rows (``route_by_comparison``); the pairs grow as the square of the rows.
COMPARED_ROUTING_MAX_ROWS = 512


def route_by_comparison(x, router_weight, router_bias, top_k: int, row_scale):
    """The router's top_k experts per token of x (tokens, hidden), their softmaxed weights, and the rows
    sorted by expert, all by counting comparisons instead of topk, sort, scatter and cumsum: compiled, that
    is a couple of fused kernels where those are a dozen launches, most of a decoded token's routing time.

    Returns the fields of ``SortedRows`` but top_k. Rows of one expert keep their token order (a stable
    sort); experts tied on a logit go lowest index first."""
    logits = F.linear(x, router_weight, router_bias)  # tokens, experts
    experts = logits.shape[-1]
    index = torch.arange(experts, device=x.device)
    above = logits[:, None, :] > logits[:, :, None]  # [t, e, f]: f beats e
    tied_before = (logits[:, None, :] == logits[:, :, None]) & (index[None, :] < index[:, None])[None]
    rank = (above | tied_before).sum(-1)  # tokens, experts: 0 for the largest logit
    picked = rank[:, None, :] == torch.arange(top_k, device=x.device)[None, :, None]  # [t, r, e]
    top_indices = torch.where(picked, index, 0).sum(-1)  # tokens, top_k: best first, as topk gives
    top_values = torch.where(picked, logits[:, None, :], 0).sum(-1)
    top_weights = torch.softmax(top_values, dim=1, dtype=top_values.dtype)

    flat = top_indices.reshape(-1)
    n = flat.numel()
    position = torch.arange(n, device=x.device)
    earlier = (flat[None, :] < flat[:, None]) | (
        (flat[None, :] == flat[:, None]) & (position[None, :] < position[:, None])
    )
    inverse = earlier.sum(-1)  # where each row lands when sorted
    order = torch.where(inverse[None, :] == position[:, None], position[None, :], 0).sum(-1)
    expert_ids = flat[order]
    offsets = (flat[None, :] <= index[:, None]).sum(-1).to(torch.int32)  # where each expert's rows end
    source = order // top_k
    scale = None if row_scale is None else row_scale.reshape(-1)[source][:, None]
    return x[source], expert_ids, offsets, inverse, top_weights.reshape(-1)[order], scale


def has_expert_lora(model) -> bool:
    return any(hasattr(m, "parameter_name") and hasattr(m, "lora_A") for m in model.modules())
