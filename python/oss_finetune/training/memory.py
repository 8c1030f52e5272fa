"""Predict the GPU memory of loading a GPT-OSS model and training a LoRA adapter on it, before doing either.

``plan_memory(config)`` takes a fine-tune config (any subset of its sections; the rest are defaults)
and returns a ``MemoryPlan``: named parts in bytes that add up to the predicted peak of
``torch.cuda.max_memory_allocated`` during a training step, the peak while loading, the allocator's
reserve on top, the GPU's free memory when known, whether it fits and, when it does not, the first
change (in order of least harm to the run) that makes it fit, found by planning again with it.

Nothing here allocates GPU memory or builds a model: the figures come from the architecture's shapes
(a transformers ``GptOssConfig`` or a known name), the dtypes and the code paths of ``train.py`` and
``engine.py``. docs/memory.md explains every term; bench/memory_planner.py measures the same
configurations on a GPU and prints predicted against measured, which is where the few constants
marked "calibrated" come from.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..core.config import deep_merge, section_dict
from ..core.errors import UserError
from ..core.tokenizer import VOCAB_SIZE
from ..modeling import auto, sources
from .language import DEFAULT_BATCH, DEFAULT_NEW_TOKENS

GIB = 2**30


class PlanError(UserError, ValueError):
    """The plan cannot be made from what was given; the message says what to give instead."""


# -- architecture ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    """The shapes that memory depends on. Counts are exact for transformers' GptOssForCausalLM."""

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    experts: int
    top_k: int
    intermediate: int
    vocab: int
    sliding_window: int | None = 128
    tied_embeddings: bool = False
    attention_bias: bool = True
    # Per layer, "sliding_attention" or "full_attention"; None: GPT-OSS's alternation, sliding first.
    layer_types: tuple[str, ...] | None = None

    @classmethod
    def from_config(cls, config: Any, name: str | None = None) -> Architecture:
        """From a transformers GptOssConfig, or the dict of a checkpoint's config.json."""
        get = (
            (lambda key, default=None: config.get(key, default))
            if isinstance(config, dict)
            else (lambda key, default=None: getattr(config, key, default))
        )
        hidden = int(get("hidden_size"))
        heads = int(get("num_attention_heads"))
        return cls(
            name=name or str(get("_name_or_path", "") or get("name_or_path", "") or "custom"),
            layers=int(get("num_hidden_layers")),
            hidden=hidden,
            heads=heads,
            kv_heads=int(get("num_key_value_heads", heads)),
            head_dim=int(get("head_dim", None) or hidden // heads),
            experts=int(get("num_local_experts")),
            top_k=int(get("num_experts_per_tok")),
            intermediate=int(get("intermediate_size")),
            vocab=int(get("vocab_size")),
            sliding_window=get("sliding_window", None),
            tied_embeddings=bool(get("tie_word_embeddings", False)),
            attention_bias=bool(get("attention_bias", True)),
            layer_types=tuple(get("layer_types", None) or ()) or None,
        )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def attention_kinds(self) -> tuple[str, ...]:
        """Each layer's attention, as transformers' GptOssConfig fills ``layer_types`` when not given."""
        if self.layer_types is not None:
            return self.layer_types
        return alternating_layer_types(self.layers)


def alternating_layer_types(layers: int) -> tuple[str, ...]:
    return tuple("sliding_attention" if i % 2 == 0 else "full_attention" for i in range(layers))


# The published shapes; the test suite checks the 20b one against model.gpt_oss_20b_config().
GPT_OSS_20B = Architecture(
    "gpt-oss-20b",
    layers=24,
    hidden=2880,
    heads=64,
    kv_heads=8,
    head_dim=64,
    experts=32,
    top_k=4,
    intermediate=2880,
    vocab=VOCAB_SIZE,
    sliding_window=128,
    layer_types=alternating_layer_types(24),
)
# gpt-oss-120b differs only in depth and in the number of experts (model card: 36 layers, 128 experts, top-4).
GPT_OSS_120B = replace(
    GPT_OSS_20B, name="gpt-oss-120b", layers=36, experts=128, layer_types=alternating_layer_types(36)
)


def architecture_for(model: Any) -> Architecture:
    """The architecture of a model name (hub id, local folder, embedded name) or a GptOssConfig."""
    if isinstance(model, Architecture):
        return model
    if not isinstance(model, str):
        return Architecture.from_config(model)
    if sources.is_embedded(model):
        try:
            return Architecture.from_config(sources.source_for(model).architecture(), name=model)
        except LookupError as error:
            raise PlanError(str(error)) from None
    folder = Path(model)
    if (folder / "config.json").is_file():
        return Architecture.from_config(json.loads((folder / "config.json").read_text(encoding="utf-8")), name=model)
    lowered = model.lower()
    # Hub ids of the family name their size; reading their config.json would need the network.
    if "120b" in lowered:
        return replace(GPT_OSS_120B, name=model)
    if "20b" in lowered:
        return replace(GPT_OSS_20B, name=model)
    raise PlanError(
        f"cannot tell the architecture of {model!r} without loading it; pass its GptOssConfig "
        "(plan_memory(..., architecture=config)) or a local folder with a config.json"
    )


# -- parameters ------------------------------------------------------------------------------------


def parameter_counts(arch: Architecture) -> dict[str, int]:
    """Parameters by group, whole model. Their sum is ``sum(p.numel() for p in model.parameters())``."""
    h, q, kv, e, i, n = arch.hidden, arch.q_dim, arch.kv_dim, arch.experts, arch.intermediate, arch.layers
    attention_weights = h * q + 2 * h * kv + q * h
    attention_biases = (q + 2 * kv + h) if arch.attention_bias else 0
    return {
        "embedding": arch.vocab * h,
        "lm_head": 0 if arch.tied_embeddings else arch.vocab * h,
        "attention": n * attention_weights,
        "attention_biases_and_sinks": n * (attention_biases + arch.heads),
        "router": n * (e * h + e),
        "expert_weights": n * (e * h * 2 * i + e * i * h),
        "expert_biases": n * (e * 2 * i + e * h),
        "norms": n * 2 * h + h,
    }


def total_parameters(arch: Architecture) -> int:
    return sum(parameter_counts(arch).values())


# in and out features of the linear layers LoRA can target, per layer.
def _linear_shapes(arch: Architecture) -> dict[str, tuple[int, int]]:
    return {
        "q_proj": (arch.hidden, arch.q_dim),
        "k_proj": (arch.hidden, arch.kv_dim),
        "v_proj": (arch.hidden, arch.kv_dim),
        "o_proj": (arch.q_dim, arch.hidden),
    }


def lora_parameters(arch: Architecture, r: int, target_modules: Sequence[str], target_experts: bool) -> int:
    """Trainable parameters of the adapter, exactly as peft builds it.

    A linear layer (in, out) gets A (r x in) and B (out x r). peft's target_parameters on a 3-D
    expert stack (experts, in, out) builds A (r * experts x in) and B (out x r * experts).
    """
    shapes = _linear_shapes(arch)
    per_layer = sum(r * (shapes[m][0] + shapes[m][1]) for m in target_modules if m in shapes)
    if target_experts:
        per_layer += r * arch.experts * (arch.hidden + 2 * arch.intermediate)  # gate_up_proj
        per_layer += r * arch.experts * (arch.intermediate + arch.hidden)  # down_proj
    return arch.layers * per_layer


# -- the settings a plan depends on ----------------------------------------------------------------


@dataclass
class GpuInfo:
    """What torch says about one GPU; ``reserved``/``allocated`` are this process's own."""

    name: str
    total_bytes: int
    free_bytes: int
    reserved_bytes: int = 0
    allocated_bytes: int = 0


def gpu_info(device: Any = None) -> GpuInfo | None:
    """The current CUDA GPU's memory, or None without CUDA. Initialises CUDA's context when it is not yet."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device() if device is None else torch.device(device).index or 0
    free, total = torch.cuda.mem_get_info(index)
    return GpuInfo(
        torch.cuda.get_device_name(index),
        int(total),
        int(free),
        int(torch.cuda.memory_reserved(index)),
        int(torch.cuda.memory_allocated(index)),
    )


def _bitsandbytes_importable() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _sections(config: dict | None) -> dict:
    config = config or {}
    unknown = sorted(set(config) - {"model", "data", "lora", "training"})
    if unknown:
        raise PlanError(f"unknown config section(s) {', '.join(unknown)}")
    return {name: section_dict(name, config.get(name)) for name in ("model", "data", "lora", "training")}


_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


def checkpoint_format(name: str) -> str:
    """How a checkpoint stores its weights: 'mxfp4' (OpenAI's releases), 'bnb-4bit', or 'plain'."""
    if sources.is_embedded(name):
        return "plain"
    folder = Path(name)
    if (folder / "config.json").is_file():
        quant = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("quantization_config") or {}
        method = quant.get("quant_method", "")
        return {"mxfp4": "mxfp4", "bitsandbytes": "bnb-4bit"}.get(method, "plain")
    lowered = name.lower()
    if "bnb" in lowered and "4bit" in lowered:
        return "bnb-4bit"
    if lowered.startswith("openai/gpt-oss") or "mxfp4" in lowered:
        return "mxfp4"
    return "plain"


# -- calibration -----------------------------------------------------------------------------------
# Every constant below is either a fact of the code (bytes per element, which tensors autograd keeps)
# or, where marked "calibrated", fitted to bench/memory_planner.py's measurements on an H100 (see
# docs/memory.md for the table). A calibrated constant multiplies a shape-derived width, so it carries
# over to other lengths, batch sizes and to gpt-oss-120b.

# Fraction of a layer's kept activations alive at once while the backward goes through it after the
# recompute (some are freed as their gradients are made, gradients of the widest ones are added).
FAST_LAYER_BACKWARD = 1.09  # calibrated (with fused kernels, as every checkpointed point was measured)
# Share of the derived width (_fast_layer_width) a layer really keeps for its backward. The fused
# (torch.compile) norms, rope and SwiGLU save their inputs and recompute the rest inside the kernel;
# unfused, autograd also keeps their float32 intermediates. calibrated, on the fast engine without
# checkpointing, 16 x 1,024 packed in 4,096, on an H200: 49.32 GiB fused, 59.12 GiB unfused.
FAST_KEPT_FUSED = 0.63
FAST_KEPT_UNFUSED = 1.25
TRANSFORMERS_LAYER = 0.94  # calibrated: the width derived below over-counts transformers' kept tensors a little
# transformers' eager attention: probabilities (heads x S x S+1) kept for the backward, and in the
# layer being computed the scores, the sink-concatenated copy, the max-shifted copy and their gradients.
EAGER_KEPT_COPIES = 1
EAGER_LIVE_COPIES = 3
# The cross-entropy over 201,088 columns in our transformers-engine loop: bf16 logits, their float32
# copy and the saved log-softmax in the forward; in the backward its gradient and the float32 and bf16
# gradients of the logits. Bytes per (trained token x vocabulary) element at the phase's top.
CROSS_ENTROPY_BYTES = 12
# peft's target_parameters adds B @ A to each expert stack in the forward and keeps the sum for the
# backward: a layer's expert stacks in the activations' dtype, and their gradient, while that layer's
# backward runs (with checkpointing; every layer's without).
PEFT_EXPERT_COPIES = 1.25  # calibrated
# mxfp4._chunked_product unpacks a stack EXPERT_CHUNKS (4) experts-groups at a time. On CUDA the
# unpacking is one fused kernel, so only bf16 weights are made: two quarter-stacks alive at once (the
# one in use and the next, or its transposed copy) = 1 byte per weight of the largest stack, which is
# what the measured 14.64 GiB run (bench/RESULTS.md, MXFP4 experts, 4 x 4,096) leaves above the
# other terms. calibrated, on that one point.
MXFP4_DEQUANT_BYTES_PER_WEIGHT = 1.0
# Unfused (CPU): codes (1 byte), their int64 index (8), the looked-up values and the scaled result
# (2 + 2 in bf16) of a quarter of the stack.
MXFP4_DEQUANT_BYTES_PER_WEIGHT_UNFUSED = 13 / 4
# mxfp4.quantize, at load: a float32 copy, its scaled copy, the bucket index (int64) and the sign term
# (int64) of one expert's matrix (it quantizes a stack one expert at a time).
MXFP4_QUANTIZE_BYTES_PER_WEIGHT = 28
# The allocator keeps freed blocks cached; max_memory_reserved exceeds max_memory_allocated by a
# share of what comes and goes (activations) plus about one large block.
RESERVE_SHARE = 0.08  # calibrated
RESERVE_FIXED = int(0.25 * GIB)
# Below this share of the budget to spare, "fits" is said with a warning (see MemoryPlan.verdict).
TIGHT_SHARE = 0.05
# The CUDA context (kernels, cuBLAS workspace) lives outside torch's counters: nvidia-smi shows it,
# torch.cuda.mem_get_info already takes it off the free memory once CUDA is initialised.
CUDA_CONTEXT = int(0.5 * GIB)
# bitsandbytes NF4 with double quantization: 4 bits a weight, an 8-bit absmax per 64 weights, and a
# float32 absmax per 256 of those.
NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)
# MXFP4: 4 bits a weight and one 8-bit scale per block of 32.
MXFP4_BYTES_PER_WEIGHT = 0.5 + 1 / 32
# The fast engine's chunked output loss: 256 MiB of float32 logits per chunk (engine._chunk_rows),
# their exponentials and the two bf16 copies made for the gradient product.
FAST_LOSS_CHUNK = int(1.5 * 256 * 2**20)


# -- generation ------------------------------------------------------------------------------------

# A Multilingual-Thinking question rendered as a generation prompt (system, developer, user) is about
# 200 tokens; the evaluation adds language.DEFAULT_NEW_TOKENS to each, language.DEFAULT_BATCH at once.
EVAL_PROMPT_TOKENS = 200


def kv_cache_bytes(arch: Architecture, batch: int, tokens: int, dtype_bytes: int) -> int:
    """The KV cache of generating ``tokens`` (prompt + new) for ``batch`` rows, as modeling.decoding holds
    it: keys and values per layer, every column for a full-attention layer, the last ``sliding_window``
    for a sliding-window one."""
    total = 0
    for kind in arch.attention_kinds:
        columns = min(arch.sliding_window, tokens) if kind == "sliding_attention" and arch.sliding_window else tokens
        total += 2 * batch * arch.kv_heads * columns * arch.head_dim * dtype_bytes
    return total


def joined_qkv_bytes(arch: Architecture, dtype_bytes: int) -> int:
    """Every layer's q, k and v weights in one matrix, the copy modeling.decoding makes per call."""
    return arch.layers * arch.hidden * (arch.heads + 2 * arch.kv_heads) * arch.head_dim * dtype_bytes


@dataclass(frozen=True)
class GenerationMemory:
    """What one batched generation call adds on top of the weights: its KV cache, and the copy of each
    layer's q, k and v weights side by side that modeling.decoding makes for the call."""

    what: str
    batch: int
    prompt_tokens: int
    new_tokens: int
    kv_cache_bytes: int
    dtype: str
    joined_qkv_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.kv_cache_bytes + self.joined_qkv_bytes

    def words(self) -> str:
        return (
            f"{self.what}: batch {self.batch} x ({self.prompt_tokens:,} prompt + {self.new_tokens:,} new tokens) "
            f"keeps a KV cache of {_gib2(self.kv_cache_bytes)} in {self.dtype} on top of the weights, "
            f"and {_gib2(self.joined_qkv_bytes)} of q, k, v weights joined for the call"
        )

    def to_dict(self) -> dict:
        return {
            "what": self.what,
            "batch": self.batch,
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "kv_cache_gib": round(self.kv_cache_bytes / GIB, 3),
            "joined_qkv_gib": round(self.joined_qkv_bytes / GIB, 3),
            "dtype": self.dtype,
        }


def generation_memory(
    architecture: Any,
    batch: int,
    prompt_tokens: int,
    new_tokens: int,
    dtype: str = "bfloat16",
    what: str = "generation",
) -> GenerationMemory:
    """The KV cache of generating ``new_tokens`` after prompts of up to ``prompt_tokens``, ``batch`` at once,
    in ``dtype`` (the model's: the cache takes its dtype)."""
    arch = architecture_for(architecture)
    size = kv_cache_bytes(arch, batch, prompt_tokens + new_tokens, _DTYPE_BYTES[dtype])
    joined = joined_qkv_bytes(arch, _DTYPE_BYTES[dtype])
    return GenerationMemory(what, batch, prompt_tokens, new_tokens, size, dtype, joined)


def _gib2(n: int) -> str:
    return f"{n / GIB:.2f} GiB"


# -- the plan --------------------------------------------------------------------------------------


@dataclass
class Part:
    name: str
    bytes: int
    note: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "gib": round(self.bytes / GIB, 3), "note": self.note}


@dataclass
class Suggestion:
    """A change of the config (a partial config to merge) and what the plan predicts with it."""

    words: str
    changes: dict
    peak_bytes: int
    reserved_bytes: int

    def to_dict(self) -> dict:
        return {
            "words": self.words,
            "changes": self.changes,
            "peak_gib": round(self.peak_bytes / GIB, 2),
            "reserved_gib": round(self.reserved_bytes / GIB, 2),
        }


@dataclass
class MemoryPlan:
    """The prediction. ``parts`` add up to ``peak_bytes`` (torch's max_memory_allocated of a step)."""

    device: str  # "cuda" or "cpu"
    model: str
    engine: str
    settings: dict
    parts: list[Part]
    phase: str  # where in the step the peak falls
    weights_bytes: int
    load_peak_bytes: int
    peak_bytes: int
    reserved_bytes: int
    trainable_parameters: int
    gpu: GpuInfo | None = None
    budget_bytes: int | None = None
    suggestion: Suggestion | None = None
    notes: list[str] = field(default_factory=list)
    generation: GenerationMemory | None = None  # the evaluation's KV cache, beside the training peak
    load_host_bytes: int | None = None  # host memory each rank takes while loading, where planned (fsdp)

    @property
    def fits(self) -> bool | None:
        """None on a CPU or when the GPU's memory is unknown."""
        if self.device != "cuda" or self.budget_bytes is None:
            return None
        return max(self.reserved_bytes, self.load_peak_bytes) <= self.budget_bytes

    @property
    def loads(self) -> bool | None:
        if self.device != "cuda" or self.budget_bytes is None:
            return None
        return self.load_peak_bytes <= self.budget_bytes

    def part(self, name: str) -> int:
        return sum(p.bytes for p in self.parts if p.name == name)

    def to_dict(self) -> dict:
        return {
            "device": self.device,
            "gpu": asdict(self.gpu) if self.gpu else None,
            "model": self.model,
            "engine": self.engine,
            "settings": self.settings,
            "phase": self.phase,
            "parts": [p.to_dict() for p in self.parts],
            "weights_gib": _g(self.weights_bytes),
            "load_peak_gib": _g(self.load_peak_bytes),
            "load_host_gib": None if self.load_host_bytes is None else _g(self.load_host_bytes),
            "peak_gib": _g(self.peak_bytes),
            "reserved_gib": _g(self.reserved_bytes),
            "cuda_context_gib": _g(CUDA_CONTEXT),
            "budget_gib": None if self.budget_bytes is None else _g(self.budget_bytes),
            "fits": self.fits,
            "trainable_parameters": self.trainable_parameters,
            "suggestion": self.suggestion.to_dict() if self.suggestion else None,
            "notes": list(self.notes),
            "generation": self.generation.to_dict() if self.generation else None,
        }

    # -- words ---------------------------------------------------------------------------------
    def verdict(self) -> str:
        """One line: the prediction and whether it fits, with the change that makes it fit when not."""
        if self.device != "cuda":
            return f"CPU run: no GPU memory to plan (host memory for the step, predicted: {_gib(self.peak_bytes)})"
        head = f"predicted training peak {_gib(self.peak_bytes)}"
        if self.budget_bytes is None:
            return head + " (the GPU's free memory is unknown)"
        of = f"{_gib(self.budget_bytes)} available on {self.gpu.name if self.gpu else 'the GPU'}"
        if self.fits:
            spare = self.budget_bytes - max(self.reserved_bytes, self.load_peak_bytes)
            if spare < TIGHT_SHARE * self.budget_bytes:
                # The one near-limit point measured (114,688 tokens: 78.1 GiB reserved predicted of 79.2)
                # ran out of memory, so a margin this thin is within the planner's error.
                return f"{head} of {of}: fits, but only {_gib(spare)} to spare, within the plan's error"
            return f"{head} of {of}: fits"
        if not self.loads:
            head = f"loading alone needs {_gib(self.load_peak_bytes)}"
        else:
            head += f" ({_gib(self.reserved_bytes)} with the allocator's cache)"
        line = f"{head} of {of}: will not fit"
        if self.suggestion is not None:
            line += (
                f"; {self.suggestion.words}: {_gib(self.suggestion.peak_bytes)} predicted of {_gib(self.budget_bytes)}"
            )
        else:
            line += "; no single change found that fits: use a GPU with more memory"
        return line

    def setting_words(self) -> str:
        s = self.settings
        shape = (
            f"packed micro-batches of up to {s['micro_batch_tokens']:,} tokens"
            if self.engine == "fast"
            else f"micro-batch {s['batch_size']} x {s['sequence_tokens']:,} tokens"
        )
        lora = f"LoRA r={s['lora_r']} on {s['lora_targets']}, {self.trainable_parameters:,} trainable"
        ckpt = "gradient checkpointing" if s["gradient_checkpointing"] else "no gradient checkpointing"
        sharded = f", fsdp over {s['ranks']} ranks" if s.get("sharding") == "fsdp" else ""
        return (
            f"{self.engine} engine, {shape}, {ckpt}, {lora}, {s['optimizer']}, weights {s['weights']}, "
            f"attention {s['attention']}{sharded}"
        )

    def text(self, title: str = "memory plan") -> str:
        lines = [f"{title}: {self.verdict()}", f"  for {self.setting_words()}"]
        width = max(len(p.name) for p in self.parts)
        for p in self.parts:
            lines.append(f"  {p.name.ljust(width)}  {p.bytes / GIB:7.2f} GiB" + (f"  ({p.note})" if p.note else ""))
        lines.append(f"  {'peak (torch allocated)'.ljust(width)}  {self.peak_bytes / GIB:7.2f} GiB  at {self.phase}")
        if self.device == "cuda":
            lines.append(
                f"  {'with the allocator cache'.ljust(width)}  {self.reserved_bytes / GIB:7.2f} GiB  "
                f"(+ about {CUDA_CONTEXT / GIB:.1f} GiB CUDA context outside torch)"
            )
            if self.load_peak_bytes > self.weights_bytes:
                lines.append(f"  {'while loading'.ljust(width)}  {self.load_peak_bytes / GIB:7.2f} GiB")
        if self.generation is not None:
            lines.append(f"  {self.generation.words()}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def html(self, title: str = "memory plan") -> str:
        esc = html.escape
        rows = "".join(
            f'<tr><td>{esc(p.name)}</td><td style="text-align:right">{p.bytes / GIB:.2f}</td>'
            f"<td>{esc(p.note)}</td></tr>"
            for p in self.parts
        )
        rows += (
            f'<tr><td><b>peak (torch allocated)</b></td><td style="text-align:right"><b>'
            f"{self.peak_bytes / GIB:.2f}</b></td><td>at {esc(self.phase)}</td></tr>"
        )
        if self.device == "cuda":
            rows += (
                f'<tr><td>with the allocator cache</td><td style="text-align:right">'
                f"{self.reserved_bytes / GIB:.2f}</td><td>+ about {CUDA_CONTEXT / GIB:.1f} GiB CUDA context "
                "outside torch</td></tr>"
            )
        colour = {True: "#009E73", False: "#D55E00", None: "#555"}[self.fits]
        notes = "".join(f'<div style="color:#555">note: {esc(n)}</div>' for n in self.notes)
        if self.generation is not None:
            notes = f"<div>{esc(self.generation.words())}</div>" + notes
        return (
            f'<div class="oss-finetune-memory" style="font-family:sans-serif;font-size:13px">'
            f'<div><b>{esc(title)}</b>: <span style="color:{colour}">{esc(self.verdict())}</span></div>'
            f'<div style="color:#555">for {esc(self.setting_words())}</div>'
            f"<table><tr><th>part</th><th>GiB</th><th>why</th></tr>{rows}</table>{notes}</div>"
        )


def _g(n: int) -> float:
    return round(n / GIB, 2)


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


# -- the model of memory ---------------------------------------------------------------------------


def _fast_layer_width(arch: Architecture, expert_lora: bool) -> int:
    """Elements per token that engine._layer keeps for its backward (bf16 each)."""
    h, q, kv, k, i = arch.hidden, arch.q_dim, arch.kv_dim, arch.top_k, arch.intermediate
    width = (
        5 * h  # the two norms' outputs, o_proj's output, the residual sum, the experts' combined output
        + 3 * q  # q, q after rope, the sink-scaled attention output
        + 3 * kv  # k, v, k after rope
        + k * (2 * h + 3 * i)  # per routed token: gathered input, gate_up (2I), gated (I), down output
    )
    if expert_lora:
        width += k * (2 * i + h)  # the low-rank products' full-width outputs, added to gate_up and down
    return width


def _transformers_layer_bytes(arch: Architecture, act: int) -> int:
    """Bytes per token that transformers' GptOssDecoderLayer (with peft LoRA on q/k/v/o) keeps for its backward."""
    h, q, kv, k, i = arch.hidden, arch.q_dim, arch.kv_dim, arch.top_k, arch.intermediate
    norms = 2 * (4 * h + 4 * h + act * h)  # float32 input and normalised copy, then the weighted result
    peft_inputs = 3 * 4 * h + 4 * q  # peft casts each LoRA layer's input to the adapter's float32
    projections = act * (q + 2 * kv) + act * (q + kv)  # q, k, v; q and k after rope
    repeated = 2 * act * q  # k and v repeated to every query head for the matmuls
    output = act * q + 3 * act * h  # attention output made contiguous; o_proj out, residuals
    experts = act * k * (2 * h + 3 * i)
    return norms + peft_inputs + projections + repeated + output + experts


def _routing_bytes(arch: Architecture, act: int) -> int:
    """Per token per layer: router logits, top-k values, indices (int64) and sort order."""
    return act * arch.experts + arch.top_k * (act + 8 + 8 + 4)


def _micro_batch(engine: str, s: dict, lengths: Sequence[int] | None, pack_tokens: int) -> tuple[int, int, int]:
    """(rows, padded length, tokens) of the largest micro-batch a step can hold."""
    limit = s["data"]["max_seq_length"]
    t = s["training"]
    per_step = t["batch_size"] * t["gradient_accumulation_steps"]
    if lengths:
        ordered = sorted((min(n, limit) for n in lengths), reverse=True)
    else:
        ordered = [limit] * per_step
    longest = ordered[0]
    if engine == "fast":
        # engine.pack fills micro-batches up to pack_tokens; a longer conversation gets one of its own.
        most = sum(ordered[:per_step])
        tokens = min(max(pack_tokens, longest), most)
        return 1, tokens, tokens
    rows = t["batch_size"]
    return rows, longest, rows * longest


@dataclass(frozen=True)
class _Choices:
    """What a plan is made for: the device, and every setting as the run will have it (``auto`` decided)."""

    device: str
    on_gpu: bool
    dtype: str
    weight_bytes: int  # per parameter in the model's dtype; activations take the same
    stored: str  # how the checkpoint stores its weights (checkpoint_format)
    four_bit: bool
    mxfp4_experts: bool
    engine: str
    checkpointing: bool
    expert_lora: bool
    pack: int
    optimizer: str
    bitsandbytes: bool


def _choose(s: dict, device: str | None, dtype: str | None, bitsandbytes: bool | None) -> _Choices:
    m, lo, t = s["model"], s["lora"], s["training"]
    if device is None:
        wanted = m["device"]
        if wanted == "auto":
            try:
                import torch

                device = "cuda" if torch.cuda.is_available() else "cpu"
            except ImportError:
                device = "cpu"
        else:
            device = wanted
    bnb = _bitsandbytes_importable() if bitsandbytes is None else bitsandbytes
    on_gpu = device == "cuda"
    if dtype is None:
        dtype = auto.weight_dtype(m["dtype"], on_gpu=on_gpu)[0]
    source = sources.find(m["name_or_path"])
    if source is not None and source.full_size and dtype == "float32":
        dtype = "bfloat16"  # model.py builds it in bf16 whatever is asked: 84 GB of float32 fits no GPU
    stored = checkpoint_format(m["name_or_path"])
    mxfp4_experts = bool(m.get("mxfp4_experts"))
    checkpointing = bool(t["gradient_checkpointing"])
    expert_lora = bool(lo["target_experts"]) and not mxfp4_experts
    return _Choices(
        device=device,
        on_gpu=on_gpu,
        dtype=dtype,
        weight_bytes=_DTYPE_BYTES[dtype],
        stored=stored,
        four_bit=bool(m["load_in_4bit"]) or stored == "bnb-4bit",
        mxfp4_experts=mxfp4_experts,
        engine=auto.engine(t["engine"], on_gpu=on_gpu),
        checkpointing=checkpointing,
        expert_lora=expert_lora,
        pack=auto.pack_tokens(t.get("pack_tokens"), gradient_checkpointing=checkpointing, expert_lora=expert_lora),
        optimizer=auto.optimizer(t["optimizer"], on_gpu=on_gpu, bitsandbytes=bnb),
        bitsandbytes=bnb,
    )


def _weights(arch: Architecture, c: _Choices, weights_bytes: int | None) -> tuple[int, str, int]:
    """The weights' bytes, how they are held (in words) and the peak while they load."""
    wb = c.weight_bytes
    counts = parameter_counts(arch)
    linear = counts["attention"]  # the nn.Linear weights bitsandbytes quantizes (lm_head is kept)
    experts = counts["expert_weights"]
    rest = sum(counts.values()) - linear - experts
    if c.four_bit:
        linear_bytes = linear * NF4_BYTES_PER_WEIGHT
        words = "attention NF4 4-bit (bitsandbytes), the rest " + c.dtype
    else:
        linear_bytes = linear * wb
        words = c.dtype
    if c.mxfp4_experts:
        expert_bytes = experts * MXFP4_BYTES_PER_WEIGHT
        words += ", experts MXFP4"
    else:
        expert_bytes = experts * wb
    predicted = int(linear_bytes + expert_bytes + rest * wb)
    weights = int(weights_bytes) if weights_bytes is not None else predicted
    if c.stored == "mxfp4" and not c.mxfp4_experts:
        words += " (MXFP4 checkpoint dequantized on load)"
    # Loading: with MXFP4 experts the model reaches the GPU a layer at a time (drawn layer by layer,
    # or staged on the host), each layer's experts quantized before the next: the final weights plus
    # one layer's bf16 experts and the scratch of quantizing one expert's matrix.
    largest_stack = arch.experts * arch.hidden * 2 * arch.intermediate
    largest_matrix = arch.hidden * 2 * arch.intermediate
    layer_experts = experts // max(arch.layers, 1)
    if c.mxfp4_experts and c.stored == "mxfp4":
        # The released blocks and scales are read as stored, one tensor at a time: nothing is expanded.
        load_peak = weights + int(largest_stack * MXFP4_BYTES_PER_WEIGHT)
        if weights_bytes is not None:
            load_peak = max(weights, 0)
    elif c.mxfp4_experts:
        load_peak = int(
            linear_bytes
            + expert_bytes
            + rest * wb
            + layer_experts * wb
            + MXFP4_QUANTIZE_BYTES_PER_WEIGHT * largest_matrix
        )
        if weights_bytes is not None:
            load_peak = max(weights, 0)  # already loaded: nothing more to load
    else:
        load_peak = weights
    return weights, words, load_peak


def _training_state(arch: Architecture, lo: dict, c: _Choices) -> tuple[int, list[Part]]:
    """The trainable parameters and the adapter, its gradients and the optimizer's states."""
    trainable = lora_parameters(arch, lo["r"], lo["target_modules"], c.expert_lora)
    # peft keeps adapters in float32 (autocast_adapter_dtype) over a bf16 model; gradients match them.
    adapter = trainable * 4
    grads = trainable * 4
    if c.optimizer == "adamw_8bit":
        # Two 8-bit moments plus a float32 absmax per 2,048-element block of each.
        states = int(trainable * (2 + 2 * 4 / 2048))
    else:
        states = trainable * 8
    return trainable, [
        Part("LoRA adapter", adapter, f"{trainable:,} parameters in float32"),
        Part("gradients", grads, "float32, one per trainable parameter"),
        Part(
            "optimizer states",
            states,
            "AdamW, two float32 moments"
            if c.optimizer == "adamw_torch"
            else "AdamW 8-bit, two 8-bit moments with block scales",
        ),
    ]


def _fast_attention(on_gpu: bool) -> str:
    # Off the GPU the engine computes attention with plain torch, one conversation's scores at a time.
    return "flash with sinks (O(seq))" if on_gpu else "with sinks, one conversation at a time (plain torch)"


def _step(
    arch: Architecture, s: dict, c: _Choices, tokens: int, rows: int, seq: int, trained: int, fused: bool | None
) -> tuple[Part, list[Part], list[Part]]:
    """The activations of the largest micro-batch: what stays for the backward, what lives while one
    layer is differentiated, and what the output layer and loss take."""
    h, n_layers, act = arch.hidden, arch.layers, c.weight_bytes
    eager = c.engine == "transformers" and s["model"]["attn_implementation"] == "eager"
    routing = tokens * _routing_bytes(arch, act)
    ckpt = c.checkpointing
    if c.engine == "fast":
        if fused is None:
            from ..modeling.engine import fuses_kernels

            fused = fuses_kernels(c.on_gpu)
        derived = tokens * _fast_layer_width(arch, c.expert_lora) * act
        layer_kept = (FAST_KEPT_FUSED if fused else FAST_KEPT_UNFUSED) * derived
        # The recomputed layer and the gradients made from it, in proportion to what it keeps
        # (measured fused; unfused it is the same proportion of a larger layer, not measured).
        backward_share = FAST_LAYER_BACKWARD / FAST_KEPT_FUSED
        if ckpt:
            stored_acts: float = n_layers * tokens * h * act
            stored_note = f"each layer's input, {n_layers} x {tokens:,} tokens x {h} (checkpointing)"
            layer_live = int(backward_share * layer_kept) + routing
            layer_note = "one layer recomputed and its backward (flash attention keeps O(seq))"
        else:
            stored_acts = n_layers * (layer_kept + routing)
            stored_note = f"every layer's kept tensors, {n_layers} x {tokens:,} tokens"
            layer_live = int((backward_share - 1) * layer_kept)
            layer_note = "gradients of the layer being differentiated"
        loss_phase = [
            Part(
                "output layer and loss",
                2 * trained * h * act + FAST_LOSS_CHUNK,
                f"{trained:,} trained positions; logits in chunks of 256 MiB",
            ),
        ]
    else:
        layer_kept = tokens * int(TRANSFORMERS_LAYER * _transformers_layer_bytes(arch, act)) + routing
        probs = rows * arch.heads * seq * (seq + 1) * act if eager else 0
        masks = 2 * rows * seq * seq * act if eager else 0  # the causal and the sliding-window additive masks
        if ckpt:
            stored_acts = n_layers * tokens * h * act + masks
            stored_note = f"each layer's input, {n_layers} x {rows} x {seq:,} x {h} (checkpointing)"
            layer_live = layer_kept + EAGER_LIVE_COPIES * probs
            layer_note = "one layer recomputed and its backward"
        else:
            stored_acts = n_layers * (layer_kept + EAGER_KEPT_COPIES * probs) + masks
            stored_note = f"every layer's kept tensors, {n_layers} x {rows} x {seq:,} tokens"
            layer_live = (EAGER_LIVE_COPIES - EAGER_KEPT_COPIES) * probs
            layer_note = "the attention scores of the layer being differentiated"
        if eager:
            stored_note += f"; eager attention keeps {arch.heads} x {seq:,} x {seq + 1:,} probabilities a layer"
        if c.expert_lora:
            # peft rebuilds each expert stack as W + B @ A in the forward and keeps it for the backward.
            rebuilt = int(PEFT_EXPERT_COPIES * (parameter_counts(arch)["expert_weights"] // n_layers) * act)
            layer_live += rebuilt if ckpt else 0
            stored_acts += 0 if ckpt else n_layers * rebuilt
        loss_phase = [
            Part(
                "output layer and loss",
                CROSS_ENTROPY_BYTES * trained * arch.vocab + 2 * trained * h * act,
                f"float32 logits and cross-entropy over {trained:,} trained positions x {arch.vocab:,}",
            ),
        ]
    flowing = 2 * tokens * h * act  # the hidden state and its gradient between layers
    layer_parts = [
        Part("layer in backward", int(layer_live), layer_note),
        Part("hidden states in flight", int(flowing), "the residual stream and its gradient"),
    ]
    if c.mxfp4_experts:
        dequant_bytes = MXFP4_DEQUANT_BYTES_PER_WEIGHT if c.on_gpu else MXFP4_DEQUANT_BYTES_PER_WEIGHT_UNFUSED
        largest_stack = arch.experts * arch.hidden * 2 * arch.intermediate
        layer_parts.append(
            Part(
                "MXFP4 dequantization",
                int(dequant_bytes * largest_stack),
                "a quarter of an expert stack unpacked at a time, in forward and backward",
            )
        )
    return Part("kept activations", int(stored_acts), stored_note), layer_parts, loss_phase


def _notes(s: dict, c: _Choices, sharded: bool = False) -> list[str]:
    notes = []
    if c.stored == "mxfp4" and c.mxfp4_experts:
        notes.append("the MXFP4 checkpoint's experts are read as released, straight to the device, never in bf16")
    if s["lora"]["target_experts"] and c.mxfp4_experts:
        notes.append("experts kept in MXFP4 take no LoRA (target_experts is ignored here; loading refuses it)")
    gpus = int(s["training"].get("gpus") or 1)
    if gpus > 1 and not sharded:
        notes.append(
            f"this is each GPU's plan: all {gpus} GPUs hold a whole replica, and each packs only its "
            "share of a step's conversations"
        )
    if c.four_bit and not c.mxfp4_experts:
        notes.append(
            "bitsandbytes quantizes nn.Linear layers only: GPT-OSS' experts (3-D stacks, most of the "
            "weights) stay in " + c.dtype + "; model.mxfp4_experts is what shrinks them"
        )
    return notes


def plan_memory(
    config: dict | None = None,
    *,
    architecture: Any = None,
    device: str | None = None,
    gpu: GpuInfo | None = None,
    lengths: Sequence[int] | None = None,
    trained_fraction: float | None = None,
    weights_bytes: int | None = None,
    dtype: str | None = None,
    bitsandbytes: bool | None = None,
    suggest: bool = True,
    fused: bool | None = None,
    generation: tuple[int, int, int] | None = None,
    ranks: int | None = None,
) -> MemoryPlan:
    """Predict the memory of loading ``config.model`` and one training step with ``config``, per GPU.

    architecture: a GptOssConfig, an Architecture or a model name; default: from model.name_or_path.
    device: 'cuda' or 'cpu'; default: from model.device and whether torch sees a GPU.
    gpu: the GPU's memory; default: read from torch when the device is cuda.
    lengths: the token lengths of the prepared conversations; default: every one max_seq_length long.
    trained_fraction: the share of tokens under the loss mask; default 1 (every token), the worst case.
    weights_bytes: the bytes the loaded model holds, when it is loaded (then exact rather than predicted).
    dtype: the loaded model's dtype ('bfloat16', 'float32', ...), when it is loaded; default: from model.dtype.
    bitsandbytes: whether bitsandbytes imports (optimizer 'auto' and load_in_4bit); default: looked up.
    fused: whether the fast engine compiles its elementwise steps; default: as engine.fuses_kernels.
    generation: (batch, prompt tokens, new tokens) of the generation whose KV cache the plan states;
    default: the evaluation's (language.DEFAULT_BATCH prompts of EVAL_PROMPT_TOKENS, DEFAULT_NEW_TOKENS new).
    ranks: the processes torchrun starts, one per GPU, for training.sharding; default: torchrun's
    WORLD_SIZE in a process it started, else training.gpus.
    """

    s = _sections(config)
    m, lo, t = s["model"], s["lora"], s["training"]
    arch = architecture_for(architecture if architecture is not None else m["name_or_path"])
    c = _choose(s, device, dtype, bitsandbytes)
    if c.on_gpu and gpu is None:
        gpu = gpu_info()

    weights, weights_words, load_peak = _weights(arch, c, weights_bytes)
    trainable, state_parts = _training_state(arch, lo, c)
    ranks = _ranks(ranks, t)
    shard_notes: list[str] = []
    sharded = _sharded(
        t.get("sharding", "auto"),
        ranks,
        lambda: plan_memory(
            deep_merge(s, {"training": {"sharding": "replicate"}}),
            architecture=architecture,
            device=c.device,
            gpu=gpu,
            lengths=lengths,
            trained_fraction=trained_fraction,
            weights_bytes=weights_bytes,
            dtype=dtype,
            bitsandbytes=c.bitsandbytes,
            suggest=False,
            fused=fused,
            ranks=ranks,
        ),
        shard_notes,
    )
    notes = _notes(s, c, sharded) + shard_notes
    gathered_parts: list[Part] = []
    load_host = None
    if sharded:
        whole = weights
        weights, load_peak, state_parts, gathered_parts = _shard_parts(arch, c, whole, trainable, state_parts, ranks)
        load_host, words = _sharded_loading(arch, c, whole, trainable, ranks, m)
        if sources.is_embedded(m["name_or_path"]) and m["device"] != "cpu":
            load_peak = whole  # built whole on the rank's GPU before it is sharded
        notes.append(words)
    rows, seq, tokens = _micro_batch(c.engine, s, lengths, c.pack)
    fraction = 1.0 if trained_fraction is None else max(0.0, min(1.0, trained_fraction))
    trained = int(math.ceil(tokens * fraction))
    stored_part, layer_parts, loss_phase = _step(arch, s, c, tokens, rows, seq, trained, fused)

    # The peak is the larger of two moments: the backward through one layer, and the output layer and loss.
    parts_common = [
        Part(
            "weights",
            weights,
            weights_words
            + ("" if weights_bytes is None else ", as loaded")
            + (f"; 1/{ranks} on each rank" if sharded else ""),
        ),
        *state_parts,
        *gathered_parts,
    ]
    backward_phase = parts_common + [stored_part] + layer_parts
    output_phase = parts_common + [stored_part] + loss_phase
    backward_peak = sum(p.bytes for p in backward_phase)
    output_peak = sum(p.bytes for p in output_phase)
    if output_peak >= backward_peak:
        parts, phase, peak = output_phase, "the output layer and loss", output_peak
    else:
        parts, phase, peak = backward_phase, "the backward through a layer", backward_peak
    reserved = int(peak + RESERVE_SHARE * (peak - weights) + RESERVE_FIXED) if c.on_gpu else peak

    budget = None
    if c.on_gpu and gpu is not None:
        # What this process may still take, plus what it already holds for the model being planned
        # (its weights are part of the prediction) and the allocator's cached free blocks.
        held = weights if weights_bytes is not None else 0
        budget = int(gpu.free_bytes + (gpu.reserved_bytes - gpu.allocated_bytes) + min(held, gpu.allocated_bytes))

    settings = {
        "weights": weights_words,
        "dtype": c.dtype,
        "batch_size": t["batch_size"],
        "gradient_accumulation_steps": t["gradient_accumulation_steps"],
        "sequence_tokens": seq,
        "micro_batch_tokens": tokens,
        "trained_tokens": trained,
        "pack_tokens": c.pack if c.engine == "fast" else None,
        "gradient_checkpointing": c.checkpointing,
        "lora_r": lo["r"],
        "lora_targets": ", ".join(lo["target_modules"]) + (" + experts" if c.expert_lora else ""),
        "optimizer": c.optimizer,
        "attention": _fast_attention(c.on_gpu) if c.engine == "fast" else m["attn_implementation"],
        "architecture": asdict(arch),
        "sharding": "fsdp" if sharded else "replicate",
        "ranks": ranks,
    }
    plan = MemoryPlan(
        device=c.device,
        model=str(m["name_or_path"]),
        engine=c.engine,
        settings=settings,
        parts=parts,
        phase=phase,
        weights_bytes=weights,
        load_peak_bytes=load_peak,
        peak_bytes=int(peak),
        reserved_bytes=reserved,
        trainable_parameters=trainable,
        gpu=gpu if c.on_gpu else None,
        budget_bytes=budget,
        notes=notes,
        load_host_bytes=load_host,
    )
    batch, prompt_tokens, new_tokens = generation or (DEFAULT_BATCH, EVAL_PROMPT_TOKENS, DEFAULT_NEW_TOKENS)
    plan.generation = GenerationMemory(
        "eval generation",
        batch,
        prompt_tokens,
        new_tokens,
        kv_cache_bytes(arch, batch, prompt_tokens + new_tokens, c.weight_bytes),
        c.dtype,
        joined_qkv_bytes(arch, c.weight_bytes),
    )
    if suggest and plan.fits is False:
        plan.suggestion = _suggest(
            config or {},
            s,
            plan,
            architecture=architecture,
            device=c.device,
            gpu=gpu,
            lengths=lengths,
            trained_fraction=trained_fraction,
            weights_bytes=weights_bytes,
            bitsandbytes=c.bitsandbytes,
            engine=c.engine,
            pack=c.pack,
            tokens=tokens,
            ranks=ranks,
        )
    return plan


def _ranks(ranks: int | None, training: dict) -> int:
    if ranks is not None:
        return max(1, int(ranks))
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return max(1, int(os.environ["WORLD_SIZE"]))
    return max(1, int(training.get("gpus") or 1))


def _sharded(wanted: str, ranks: int, replica, notes: list[str]) -> bool:
    """Whether training.sharding shards the base over the ranks; 'auto' plans a whole replica first
    (``replica()``) and shards where it does not fit one GPU, saying so in ``notes``."""
    if ranks <= 1 or wanted == "replicate":
        return False
    if wanted == "fsdp":
        return True
    whole = replica()
    if whole.fits is False:
        notes.append(f"sharding auto: fsdp, since a whole replica does not fit one GPU ({whole.verdict()})")
        return True
    return False


def _sharded_loading(
    arch: Architecture, c: _Choices, whole: int, trainable: int, ranks: int, model: dict
) -> tuple[int, str]:
    """The host memory one rank takes to load its share, and the note that says how it loads.

    A checkpoint is built on the meta device and each rank reads only its rows of every weight
    (sharding.load_shares): on the host it holds the adapter whole as drawn, in float32, and one slice
    of one weight as read and as cast. An embedded model is built whole on every rank from its seed."""
    if sources.is_embedded(model["name_or_path"]):
        where = "in host memory" if model["device"] == "cpu" else "on its GPU"
        return whole, (
            f"fsdp: each rank builds the whole embedded model {where} from its seed ({_gib(whole)}) "
            "and keeps only its shard"
        )
    counts = parameter_counts(arch)
    largest = max(counts["embedding"], arch.experts * arch.hidden * 2 * arch.intermediate)
    read = math.ceil(largest / ranks) * (2 + c.weight_bytes)  # stored in bf16 (or expanded from MXFP4), then cast
    host = trainable * 4 + read
    return host, (
        f"fsdp: each rank reads only its share of the checkpoint, straight to its GPU; on the host "
        f"{_gib(host)} (the adapter whole as drawn and one slice being read), never the whole model ({_gib(whole)})"
    )


def _shard_parts(
    arch: Architecture, c: _Choices, weights: int, trainable: int, state_parts: list[Part], ranks: int
) -> tuple[int, int, list[Part], list[Part]]:
    """Under FSDP each GPU keeps a 1/ranks slice of every parameter, the adapter's training state
    included, and gathers whole weights only around their use: the embedding and the output layer for
    the whole step (FSDP keeps the outermost group gathered between forward and backward), and two
    decoder layers at a time (the one computing and the next, fetched ahead)."""
    share = math.ceil(weights / ranks)
    counts = parameter_counts(arch)
    outer = (counts["embedding"] + counts["lm_head"] + arch.hidden) * c.weight_bytes
    layer = max(weights - outer, 0) // max(arch.layers, 1)
    # A layer's adapter is gathered in the compute dtype and its gradients made in float32 before
    # they are reduce-scattered.
    layer_adapter = trainable // max(arch.layers, 1) * (c.weight_bytes + 4)
    gathered = outer + 2 * (layer + layer_adapter)
    parts = [
        replace(p, bytes=math.ceil(p.bytes / ranks), note=f"{p.note}; 1/{ranks} on each rank") for p in state_parts
    ]
    return (
        share,
        share,
        parts,
        [
            Part(
                "gathered weights",
                gathered,
                "the embedding and output layer, and two decoder layers whole (the one computing, the next fetched)",
            )
        ],
    )


def plan(
    model_config: dict | None = None,
    lora_config: dict | None = None,
    training_config: dict | None = None,
    *,
    data_config: dict | None = None,
    free_bytes: int | None = None,
    **kwargs: Any,
) -> MemoryPlan:
    """The plan from the config's sections one by one (each filled with its defaults).

    free_bytes: the GPU memory this run may use; given, the plan is for a CUDA GPU with that much free
    (so that a verdict and a suggestion can be made without one); not given, torch is asked on CUDA.
    Other keyword arguments go to ``plan_memory``.
    """
    config = {
        "model": model_config or {},
        "lora": lora_config or {},
        "training": training_config or {},
        "data": data_config or {},
    }
    if free_bytes is not None:
        kwargs.setdefault("device", "cuda")
        kwargs.setdefault("gpu", GpuInfo("GPU", int(free_bytes), int(free_bytes)))
    return plan_memory(config, **kwargs)


# -- what to change when it does not fit ----------------------------------------------------------


def _candidates(s: dict, plan: MemoryPlan, *, bnb: bool, engine: str, pack: int, tokens: int):
    """(words, partial config) in order of least harm to the run; each one alone."""
    m, d, lo, t = s["model"], s["data"], s["lora"], s["training"]
    ranks = plan.settings.get("ranks", 1)
    if ranks > 1 and plan.settings.get("sharding") != "fsdp":
        yield f"shard the base over the {ranks} ranks (sharding fsdp)", {"training": {"sharding": "fsdp"}}
    if not t["gradient_checkpointing"]:
        yield "turn on gradient checkpointing", {"training": {"gradient_checkpointing": True}}
    # Smaller micro-batches with more accumulation: the same optimizer step, more passes.
    if engine == "fast":
        size = min(pack, tokens)
        while size > d["max_seq_length"] and size > 512:
            size //= 2
            yield (
                f"pack at most {size:,} tokens per micro-batch (same step, more passes)",
                {"training": {"pack_tokens": size}},
            )
    else:
        batch, accumulation = t["batch_size"], t["gradient_accumulation_steps"]
        while batch > 1:
            batch, accumulation = max(1, batch // 2), accumulation * 2
            yield (
                f"micro-batches of {batch} with {accumulation} accumulation steps (same effective batch)",
                {"training": {"batch_size": batch, "gradient_accumulation_steps": accumulation}},
            )
    if t["optimizer"] != "adamw_8bit" and plan.settings["optimizer"] != "adamw_8bit" and bnb and plan.device == "cuda":
        yield "use the 8-bit AdamW (optimizer adamw_8bit)", {"training": {"optimizer": "adamw_8bit"}}
    embedded = sources.is_embedded(m["name_or_path"])
    if not m["load_in_4bit"] and bnb and not embedded and checkpoint_format(m["name_or_path"]) == "plain":
        yield "load the base weights in 4-bit (load_in_4bit)", {"model": {"load_in_4bit": True}}
    if not m.get("mxfp4_experts"):
        if not lo["target_experts"]:
            yield "keep the experts in MXFP4 (mxfp4_experts)", {"model": {"mxfp4_experts": True}}
    length = d["max_seq_length"]
    while length > 256:
        length //= 2
        yield f"a shorter max_seq_length of {length:,}", {"data": {"max_seq_length": length}}
    if lo["target_experts"]:
        yield "LoRA on the attention only (target_experts false)", {"lora": {"target_experts": False}}
        yield (
            "LoRA on the attention only with the experts in MXFP4",
            {"lora": {"target_experts": False}, "model": {"mxfp4_experts": True}},
        )


def _suggest(
    config: dict,
    s: dict,
    plan: MemoryPlan,
    *,
    engine: str,
    pack: int,
    tokens: int,
    bitsandbytes: bool,
    weights_bytes: int | None,
    lengths,
    **kwargs,
) -> Suggestion | None:
    base = {k: v for k, v in s.items()}
    cumulative: dict = {}
    options = list(_candidates(s, plan, bnb=bitsandbytes, engine=engine, pack=pack, tokens=tokens))

    def with_changes(changes: dict) -> MemoryPlan:
        # A change of the model means loading it again: the loaded size no longer holds.
        return plan_memory(
            deep_merge(base, changes),
            weights_bytes=None if "model" in changes else weights_bytes,
            bitsandbytes=bitsandbytes,
            suggest=False,
            lengths=_cut(lengths, changes),
            **kwargs,
        )

    for words, changes in options:
        trial = with_changes(changes)
        if trial.fits:
            return Suggestion(words, changes, trial.peak_bytes, trial.reserved_bytes)
    # No single change is enough: add them up in the same order and name the first combination that fits.
    # A later value of the same setting (a smaller pack, a shorter length) replaces the earlier one's words.
    words_by_setting: dict[tuple, str] = {}
    for words, changes in options:
        merged = deep_merge(cumulative, changes)
        if merged == cumulative:
            continue
        cumulative = merged
        keys = tuple(sorted((section, key) for section, values in changes.items() for key in values))
        for other in [k for k in words_by_setting if set(k) & set(keys)]:
            del words_by_setting[other]
        words_by_setting[keys] = words
        trial = with_changes(cumulative)
        if trial.fits:
            return Suggestion(
                " and ".join(words_by_setting.values()), cumulative, trial.peak_bytes, trial.reserved_bytes
            )
    return None


def _cut(lengths, changes: dict):
    limit = changes.get("data", {}).get("max_seq_length")
    if lengths is None or limit is None:
        return lengths
    return [min(n, limit) for n in lengths]


# -- from a live session ---------------------------------------------------------------------------


def examples_shape(examples: Sequence[Any]) -> tuple[list[int], float | None]:
    """Token lengths of prepared examples and the share of their tokens under the loss mask."""
    lengths, trained, total = [], 0, 0
    for example in examples:
        ids = example["input_ids"] if isinstance(example, dict) else example.input_ids
        mask = example["trained"] if isinstance(example, dict) else example.trained
        lengths.append(len(ids))
        total += len(ids)
        trained += sum(1 for flag in mask if flag)
    return lengths, (trained / total if total else None)


def loaded_weight_bytes(model: Any) -> int:
    """Bytes of a loaded model's frozen weights and buffers (an adapter's trainable tensors excluded)."""
    has_adapter = hasattr(model, "peft_config")
    total = 0
    for p in model.parameters():
        if has_adapter and p.requires_grad:
            continue
        total += p.numel() * p.element_size()
    for b in model.buffers():
        total += b.numel() * b.element_size()
    return total
