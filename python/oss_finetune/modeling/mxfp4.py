"""GPT-OSS experts kept in 4-bit MXFP4, dequantized one layer at a time.

The mixture-of-experts weights are 19 of gpt-oss-20b's 21 billion parameters: 36 GiB in bf16. OpenAI
released them in MXFP4: each block of 32 weights shares one power-of-two scale (8 bits) and each weight
is a 4-bit float (E2M1: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives), 4.25 bits a weight. Kept that
way the whole model takes about 13 GiB, and a LoRA run on the attention fits a 16 GiB GPU.

bitsandbytes cannot do this for GPT-OSS: it quantizes ``nn.Linear`` layers, and the experts are 3-D
parameters. ``quantize_experts(model)`` replaces every ``GptOssExperts`` with ``Mxfp4Experts``, which
holds the packed blocks and scales as buffers, and dequantizes a layer's weights only while its
products run, in the forward and again in the backward (nothing of bf16 size is kept for autograd).
The base weights are frozen; adapters go on the attention (LoRA on MXFP4 experts is not supported).
"""

from __future__ import annotations

import torch

from . import row_kernels
from .experts import experts_forward
from .kernels import fused, grouped_mm

BLOCK = 32
# E2M1 codes 0-15: sign bit 8, then the magnitudes in order.
_MAGNITUDES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
_MIDPOINTS = torch.tensor([(a + b) / 2 for a, b in zip(_MAGNITUDES, _MAGNITUDES[1:])], dtype=torch.float32)


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocks of 32 along the last dimension -> (codes packed two per byte, biased power-of-two scales).

    A stack of experts is done one expert at a time: the float32 and int64 scratch of a whole
    gpt-oss-20b stack would be some 15 GB.
    """
    if weight.dim() == 3 and weight.shape[0] > 1:
        parts = [_quantize(expert) for expert in weight]
        return torch.stack([p for p, _ in parts]), torch.stack([s for _, s in parts])
    return _quantize(weight)


def _quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    *lead, width = weight.shape
    if width % BLOCK:
        raise ValueError(f"MXFP4 needs the last dimension to be a multiple of {BLOCK}, not {width}")
    blocks = weight.float().reshape(*lead, width // BLOCK, BLOCK)
    largest = blocks.abs().amax(-1, keepdim=True)
    # The smallest power of two that brings the block's largest magnitude within 6, E2M1's largest.
    exponent = torch.ceil(torch.log2((largest / 6.0).clamp_min(2.0**-126))).clamp(-127, 127)
    scaled = blocks / torch.exp2(exponent)
    index = torch.bucketize(scaled.abs().contiguous(), _MIDPOINTS.to(weight.device))
    codes = (index + 8 * (scaled < 0)).to(torch.uint8).reshape(*lead, width)
    packed = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return packed, (exponent[..., 0] + 127).to(torch.uint8)


def _code_values(codes: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """E2M1 codes to their values by arithmetic rather than a table lookup: a table is a constant
    tensor that compiled code copies from the host on every call, which a CUDA graph cannot capture."""
    exponent = (codes >> 1) & 3
    mantissa = (codes & 1).to(dtype)
    magnitude = torch.where(exponent == 0, mantissa * 0.5, torch.exp2((exponent - 1).to(dtype)) * (1 + mantissa * 0.5))
    return torch.where(codes >= 8, -magnitude, magnitude)


def dequantize(packed: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The inverse of ``quantize``, in ``dtype``."""
    codes = torch.stack((packed & 0x0F, packed >> 4), dim=-1).reshape(*packed.shape[:-1], -1)
    *lead, width = codes.shape
    blocks = _code_values(codes, dtype).reshape(*lead, width // BLOCK, BLOCK)
    factor = torch.exp2(scales.to(torch.float32) - 127).to(dtype)
    return (blocks * factor[..., None]).reshape(*lead, width)


# The experts are dequantized a few at a time, so the bf16 copy alive at once is a quarter of a stack
# (265 MB for gpt-oss-20b's gate_up) rather than all of it.
EXPERT_CHUNKS = 4


def _chunked_product(x, packed, scales, offsets, transpose: bool):
    if x.is_cuda and torch.cuda.is_current_stream_capturing():
        return _chunked_product_fixed(x, packed, scales, offsets, transpose)
    experts = packed.shape[0]
    step = max(1, -(-experts // EXPERT_CHUNKS))
    ends = offsets.tolist()
    width = packed.shape[1] if transpose else 2 * packed.shape[2]
    out = x.new_zeros(x.shape[0], width)
    for first in range(0, experts, step):
        last = min(experts, first + step)
        start, stop = (ends[first - 1] if first else 0), ends[last - 1]
        if stop == start:
            continue
        weight = fused(dequantize, x)(packed[first:last], scales[first:last], x.dtype)  # experts, out, in
        if transpose:
            weight = weight.transpose(1, 2)
        out[start:stop] = grouped_mm(x[start:stop], weight, (offsets[first:last] - start).to(torch.int32))
    return out


def _chunked_product_fixed(x, packed, scales, offsets, transpose: bool):
    """``_chunked_product`` without reading the offsets back to the host, for a step captured in a CUDA
    graph: each chunk multiplies every row (rows of other experts land in the chunk's first group or in
    none) and keeps only its own rows. More arithmetic, the same result, no synchronisation."""
    experts = packed.shape[0]
    step = max(1, -(-experts // EXPERT_CHUNKS))
    width = packed.shape[1] if transpose else 2 * packed.shape[2]
    out = x.new_zeros(x.shape[0], width)
    row = torch.arange(x.shape[0], device=x.device)[:, None]
    for first in range(0, experts, step):
        last = min(experts, first + step)
        weight = fused(dequantize, x)(packed[first:last], scales[first:last], x.dtype)
        if transpose:
            weight = weight.transpose(1, 2)
        part = grouped_mm(x, weight, offsets[first:last].contiguous())
        if part.shape[0] < x.shape[0]:  # the CPU's grouped product stops at the last group's end
            part = torch.cat([part, part.new_zeros(x.shape[0] - part.shape[0], width)])
        start = offsets[first - 1] if first else offsets.new_zeros(())
        mine = (row >= start) & (row < offsets[last - 1])
        out = torch.where(mine, part, out)
    return out


class _QuantizedGroupedProduct(torch.autograd.Function):
    """Rows sorted by expert times that expert's frozen MXFP4 matrix; the backward dequantizes again
    instead of keeping the bf16 weights alive between forward and backward."""

    @staticmethod
    def forward(ctx, x, packed, scales, offsets):
        ctx.save_for_backward(packed, scales, offsets)
        return _chunked_product(x, packed, scales, offsets, transpose=True)

    @staticmethod
    def backward(ctx, grad):
        packed, scales, offsets = ctx.saved_tensors
        return _chunked_product(grad.contiguous(), packed, scales, offsets, transpose=False), None, None, None


def grouped_product(x, packed, scales, offsets):
    return _QuantizedGroupedProduct.apply(x, packed, scales, offsets)


class Mxfp4Experts(torch.nn.Module):
    """Drop-in for transformers' GptOssExperts with the two weight stacks in MXFP4 (biases in bf16)."""

    def __init__(self, experts):
        super().__init__()
        self._take_shape(experts, experts.gate_up_proj.dtype)
        # Stored as (experts, out, in) so that the blocks of 32 run along each product's inner dimension.
        for name in ("gate_up_proj", "down_proj"):
            packed, scales = quantize(getattr(experts, name).detach().transpose(1, 2))
            self.register_buffer(f"{name}_blocks", packed)
            self.register_buffer(f"{name}_scales", scales)
        self.gate_up_proj_bias = torch.nn.Parameter(experts.gate_up_proj_bias.detach().clone(), requires_grad=False)
        self.down_proj_bias = torch.nn.Parameter(experts.down_proj_bias.detach().clone(), requires_grad=False)

    @classmethod
    def from_packed(cls, experts, tensors: dict[str, torch.Tensor], dtype: torch.dtype) -> Mxfp4Experts:
        """From a checkpoint's own MXFP4 tensors, as OpenAI released them: ``{proj}_blocks`` (experts, out,
        in/32, 16 bytes), ``{proj}_scales`` (experts, out, in/32) and ``{proj}_bias``, for gate_up_proj and
        down_proj. That is this class's layout, so nothing is converted. ``experts`` gives the shapes (a
        GptOssExperts, on the meta device is enough)."""
        self = cls.__new__(cls)
        torch.nn.Module.__init__(self)
        self._take_shape(experts, dtype)
        shapes = {
            "gate_up_proj": (2 * self.intermediate_size, self.hidden_size),
            "down_proj": (self.hidden_size, self.intermediate_size),
        }
        for name, (rows, width) in shapes.items():
            blocks, scales = tensors[f"{name}_blocks"], tensors[f"{name}_scales"]
            expected = (self.num_experts, rows, width // BLOCK)
            if tuple(scales.shape) != expected or tuple(blocks.shape[:3]) != expected or blocks.shape[-1] != BLOCK // 2:
                raise ValueError(
                    f"{name}: MXFP4 blocks {tuple(blocks.shape)} and scales {tuple(scales.shape)} do not "
                    f"fit {self.num_experts} experts of {rows} x {width}"
                )
            self.register_buffer(f"{name}_blocks", blocks.to(torch.uint8).reshape(self.num_experts, rows, width // 2))
            self.register_buffer(f"{name}_scales", scales.to(torch.uint8))
            bias = tensors[f"{name}_bias"].to(dtype)
            setattr(self, f"{name}_bias", torch.nn.Parameter(bias, requires_grad=False))
        return self

    def _take_shape(self, experts, dtype: torch.dtype) -> None:
        self.num_experts = experts.num_experts
        self.hidden_size = experts.hidden_size
        self.intermediate_size = experts.intermediate_size
        self.alpha = experts.alpha
        self.limit = experts.limit
        self.dtype = dtype

    def grouped_product(self, rows: torch.Tensor, name: str, offsets: torch.Tensor) -> torch.Tensor:
        """Rows sorted by expert times one stack, read from its 4-bit form (experts.experts_forward asks)."""
        return grouped_product(rows, getattr(self, f"{name}_blocks"), getattr(self, f"{name}_scales"), offsets)

    def row_product(self, rows: torch.Tensor, name: str, expert_ids: torch.Tensor) -> torch.Tensor:
        """Each row times its own expert's matrix, dequantizing only the experts the rows chose: the
        product a few decoded tokens need (the grouped one converts whole stacks)."""
        blocks, scales = getattr(self, f"{name}_blocks"), getattr(self, f"{name}_scales")
        if row_kernels.available(rows):
            out = row_kernels.try_rows(row_kernels.mxfp4_rows, rows, blocks, scales, expert_ids)
            if out is not None:
                return out
        weight = fused(dequantize, rows)(blocks[expert_ids], scales[expert_ids], rows.dtype)  # rows, out, in
        return torch.bmm(weight, rows[:, :, None])[..., 0]

    def weight(self, name: str) -> torch.Tensor:
        """One stack dequantized, (experts, in, out) like GptOssExperts' parameter."""
        return dequantize(getattr(self, f"{name}_blocks"), getattr(self, f"{name}_scales"), self.dtype).transpose(1, 2)

    def forward(self, hidden_states, router_indices=None, routing_weights=None):
        # The call transformers' GptOssMLP makes: (tokens, hidden), top-k indices, top-k weights.
        return experts_forward(self, hidden_states, router_indices, routing_weights)


def quantize_experts(model, device: torch.device | str | None = None) -> int:
    """Replace every GptOssExperts in ``model`` by Mxfp4Experts; returns how many were replaced.

    With ``device``, each bf16 stack goes there one layer at a time and only its MXFP4 form stays:
    a model held on the host reaches a small GPU without ever being whole on it in bf16.
    """
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssExperts

    replaced = 0
    for module in list(model.modules()):
        mlp_experts = getattr(module, "experts", None)
        if isinstance(mlp_experts, GptOssExperts):
            source = mlp_experts.to(device) if device is not None else mlp_experts
            module.experts = Mxfp4Experts(source)
            del mlp_experts, source
            replaced += 1
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return replaced


def build_random_layerwise(config, *, seed: int, dtype: torch.dtype, device: torch.device | str):
    """A GptOssForCausalLM with seeded random weights whose experts are MXFP4 from the start.

    The model is declared on the meta device and drawn one layer at a time, each layer's experts
    quantized before the next is drawn, so the GPU never holds more than one layer's experts in bf16.
    The weights follow transformers' initialisation for GPT-OSS (normal with the config's
    initializer_range, zero biases except the router's, norms at one); they are not the same draws
    as a model built whole.
    """
    from transformers import GptOssForCausalLM
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    device = torch.device(device)
    with torch.device("meta"):
        model = GptOssForCausalLM._from_config(config, dtype=dtype)
    generator = torch.Generator(device=device).manual_seed(seed)
    std = config.initializer_range

    def draw(module, prefix: str) -> None:
        module.to_empty(device=device)
        with torch.no_grad():
            for name, param in module.named_parameters():
                full = f"{prefix}.{name}"
                if name.endswith("norm.weight") or full.endswith("norm.weight"):
                    param.fill_(1.0)
                elif name.endswith("bias") and "router" not in full:
                    param.zero_()
                else:
                    param.normal_(0.0, std, generator=generator)

    body = model.model
    draw(body.embed_tokens, "embed_tokens")
    if body.embed_tokens.padding_idx is not None:
        with torch.no_grad():
            body.embed_tokens.weight[body.embed_tokens.padding_idx].zero_()
    draw(body.norm, "norm")
    draw(model.lm_head, "lm_head")
    with torch.device(device):  # its frequencies are computed, not loaded: meta would leave them empty
        body.rotary_emb = GptOssRotaryEmbedding(config)
    for index, layer in enumerate(body.layers):
        draw(layer, f"layers.{index}")
        layer.mlp.experts = Mxfp4Experts(layer.mlp.experts)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return model


def expert_bytes(model) -> int:
    """Bytes held by the experts' weights, packed or not (biases excluded)."""
    total = 0
    for module in model.modules():
        if isinstance(module, Mxfp4Experts):
            total += sum(b.numel() * b.element_size() for n, b in module.named_buffers(recurse=False))
        elif type(module).__name__ == "GptOssExperts":
            total += sum(
                getattr(module, n).numel() * getattr(module, n).element_size() for n in ("gate_up_proj", "down_proj")
            )
    return total


_EXPERT_TENSORS = tuple(
    f"{proj}_{part}" for proj in ("gate_up_proj", "down_proj") for part in ("blocks", "scales", "bias")
)


def load_checkpoint(folder, *, dtype: torch.dtype, device: torch.device | str, attn_implementation: str = "eager"):
    """A GptOssForCausalLM from an MXFP4 checkpoint folder (config.json and *.safetensors, as OpenAI
    released gpt-oss) with the experts kept as released: each tensor is read straight to ``device``,
    the experts' blocks and scales into Mxfp4Experts unchanged, everything else in ``dtype``. No bf16
    copy of the experts is ever made, on the host or on the GPU (transformers would dequantize them:
    39 GiB for gpt-oss-20b, 217 GiB for gpt-oss-120b)."""
    from pathlib import Path

    from safetensors import safe_open
    from transformers import GenerationConfig, GptOssConfig, GptOssForCausalLM
    from transformers.models.gpt_oss.modeling_gpt_oss import GptOssRotaryEmbedding

    folder = Path(folder)
    device = torch.device(device)
    config = GptOssConfig.from_pretrained(folder)
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the experts are handled here; the rest is plain
    config._attn_implementation = attn_implementation
    with torch.device("meta"):
        model = GptOssForCausalLM._from_config(config, dtype=dtype)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no .safetensors files")
    experts: dict[int, dict[str, torch.Tensor]] = {}
    where = "cpu" if device.type == "cpu" else f"cuda:{device.index or 0}"
    for file in files:
        with safe_open(str(file), framework="pt", device=where) as reader:
            for key in reader.keys():
                module_path, _, leaf = key.rpartition(".")
                if leaf in _EXPERT_TENSORS and module_path.endswith("mlp.experts"):
                    layer = int(module_path.split(".")[2])
                    experts.setdefault(layer, {})[leaf] = reader.get_tensor(key)
                    if len(experts[layer]) == len(_EXPERT_TENSORS):
                        mlp = model.model.layers[layer].mlp
                        mlp.experts = Mxfp4Experts.from_packed(mlp.experts, experts.pop(layer), dtype)
                    continue
                try:
                    module = model.get_submodule(module_path)
                except AttributeError:
                    raise ValueError(f"{file.name}: {key} is not a parameter of GptOssForCausalLM") from None
                if leaf not in module._parameters:
                    raise ValueError(f"{file.name}: {key} is not a parameter of GptOssForCausalLM")
                tensor = reader.get_tensor(key).to(dtype)
                module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
    if experts:
        layer, found = next(iter(experts.items()))
        missing = [name for name in _EXPERT_TENSORS if name not in found]
        raise ValueError(f"layer {layer}'s experts lack {', '.join(missing)} in {folder}")
    left = [name for name, param in model.named_parameters() if param.is_meta]
    if left:
        raise ValueError(f"{folder} lacks {len(left)} weight(s), the first {left[0]}")
    with torch.device(device):  # computed, not loaded
        model.model.rotary_emb = GptOssRotaryEmbedding(config)
    try:
        model.generation_config = GenerationConfig.from_pretrained(folder)
    except OSError:
        pass
    return model.eval()
