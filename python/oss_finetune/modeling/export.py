"""A fine-tune leaves the notebook: five formats, each written, read back by its consumer and compared
with the live model before it counts.

- ``peft``: the adapter as peft writes it, with the base model it belongs to in adapter_config.json.
- ``merged``: bf16 safetensors with the adapter folded in, a config without quantization_config, the
  tokenizer and the Harmony chat template.
- ``mxfp4``: the same with the experts in MXFP4 as OpenAI released gpt-oss (``*_blocks``/``*_scales``
  and their quantization_config), so it loads wherever the original loads.
- ``vllm``: the adapter keyed and shaped as vLLM's gpt-oss LoRA loader reads it (``VLLM_SOURCE``).
- ``gguf``: one file for llama.cpp and Ollama, llama.cpp's gpt-oss tensor names, experts in its MXFP4 type.

``export(model, tokenizer, fmt, path, base_model=...)`` writes one of them and verifies it: a few Harmony
prompts are answered greedily by the live model (with the weights rounded as the format stores them,
so that what remains is arithmetic), the export's consumer scores the same tokens, and the greedy
tokens and the logits must agree; the first token that differs is named. The unrounded live model's
distance is reported beside it: that is what the format's quantization costs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shlex
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.errors import UserError
from .adapter import adapter_enabled, save_adapter
from .mxfp4 import BLOCK, Mxfp4Experts, dequantize, quantize

FORMATS = ("peft", "merged", "mxfp4", "vllm", "gguf")
MANIFEST = "export.json"
# What the vllm layout was derived from: vLLM's own source, read (vLLM cannot run without its GPU build).
VLLM_SOURCE = (
    "vLLM main, vllm/model_executor/models/gpt_oss.py at a6b6cfaa (GptOssForCausalLM: is_3d_moe_weight, "
    "hf_to_vllm_mapper, packed qkv_proj), vllm/lora/lora_model.py at 0306474e (from_local_checkpoint) and "
    "vllm/lora/model_manager.py at bb1d76e5 (_stack_moe_lora_weights)"
)
# The released checkpoints keep everything but the experts in bf16; their config says which.
MXFP4_QUANTIZATION_CONFIG = {
    "quant_method": "mxfp4",
    "modules_to_not_convert": [
        "model.layers.*.self_attn",
        "model.layers.*.mlp.router",
        "model.embed_tokens",
        "lm_head",
    ],
}
EXPERT_STACKS = ("gate_up_proj", "down_proj")
SHARD_BYTES = 4 * 2**30
PROBES = (
    "What is 7 times 8?",
    "Name three primary colours.",
    "Translate 'good morning' into French.",
)
PROBE_DATE = "2026-01-01"
NEW_TOKENS = 12


class ExportError(UserError, RuntimeError):
    """An export that cannot be written as asked; the message names the setting and the fix."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class ExportMismatch(ExportError):
    """A written export that does not behave like the live model."""


@dataclass
class Verification:
    consumer: str  # who read it back: transformers, peft, llama.cpp, ...
    probes: int = 0
    tokens: int = 0  # generated tokens compared
    max_logit_diff: float = 0.0
    tolerance: float = 0.0
    quantization_diff: float | None = None  # against the live model before the format's rounding
    note: str = ""

    def text(self) -> str:
        if not self.probes:
            return f"checked by {self.consumer}{f' ({self.note})' if self.note else ''}"
        logits = (
            "identical logits"
            if self.max_logit_diff == 0
            else f"logits within {self.max_logit_diff:.2g} (tolerance {self.tolerance:.2g})"
        )
        return (
            f"verified with {self.consumer}: {self.tokens} greedy tokens of {self.probes} probes equal, {logits}"
            + (
                f"; max logit change from the unrounded live model {self.quantization_diff:.3g}"
                if self.quantization_diff is not None
                else ""
            )
            + (f"; {self.note}" if self.note else "")
        )


@dataclass
class ExportResult:
    format: str
    path: Path
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    verification: Verification | None = None

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files if f.exists())

    @property
    def size(self) -> str:
        return _size(self.bytes)

    def line(self) -> str:
        checked = self.verification.text() if self.verification else "NOT verified"
        return f"{self.format}: wrote {self.path} ({_size(self.bytes)}, {self.seconds:.1f} s); {checked}"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


# -- the live model's weights, as a plain GptOssForCausalLM would hold them -----------------------


def _clean(name: str) -> str:
    """A peft-wrapped parameter's name as transformers names it in a checkpoint."""
    return ".".join(p for p in name.split(".") if p != "base_layer").removeprefix("base_model.model.")


def _lora_layers(model) -> dict[str, tuple[Any, list[str]]]:
    """Checkpoint name of each adapted weight -> (the peft layer, its active adapters)."""
    try:
        from peft.tuners.lora.layer import LoraLayer, ParamWrapper
    except ImportError:  # no peft, no adapter
        return {}
    found: dict[str, tuple[Any, list[str]]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer) or getattr(module, "merged", False):
            continue
        adapters = [a for a in module.active_adapters if a in module.lora_A]
        if not adapters:
            continue
        leaf = module.parameter_name if isinstance(module, ParamWrapper) else "weight"
        found[f"{_clean(name)}.{leaf}"] = (module, adapters)
    return found


def _base_parameters(model) -> Iterator[tuple[str, torch.nn.Parameter]]:
    for name, param in model.named_parameters():
        if any(part.startswith("lora_") for part in name.split(".")):
            continue
        yield _clean(name), param


def merged_tensors(model) -> Iterator[tuple[str, torch.Tensor]]:
    """(checkpoint name, float32 tensor on the model's device) for every weight, adapter folded in; one at a
    time, so that a 20b model never exists twice, and on the GPU where there is one, so that quantizing the
    experts is not the host's work. MXFP4 experts come out dequantized."""
    deltas = _lora_layers(model)
    with torch.no_grad():
        for name, param in _base_parameters(model):
            value = param.detach().float()
            if name in deltas:
                layer, adapters = deltas[name]
                for adapter in adapters:
                    value = value + layer.get_delta_weight(adapter).float()
            yield name, value
        for module_name, module in model.named_modules():
            if isinstance(module, Mxfp4Experts):
                prefix = _clean(module_name)
                for stack in EXPERT_STACKS:
                    yield f"{prefix}.{stack}", module.weight(stack).float()


def _is_expert_stack(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in EXPERT_STACKS and ".mlp.experts." in name


def mxfp4_pack(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A transformers expert stack (experts, in, out) -> OpenAI's blocks (experts, out, in/32, 16) and scales
    (experts, out, in/32): the blocks of 32 run along each product's inner dimension."""
    packed, scales = quantize(weight.transpose(1, 2).contiguous())
    experts, rows, half = packed.shape
    return packed.reshape(experts, rows, half * 2 // BLOCK, BLOCK // 2), scales


def mxfp4_unpack(blocks: torch.Tensor, scales: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    experts, rows, groups, _ = blocks.shape
    return dequantize(blocks.reshape(experts, rows, groups * BLOCK // 2), scales, dtype).transpose(1, 2)


def _mxfp4_round(name: str, value: torch.Tensor) -> torch.Tensor:
    return mxfp4_unpack(*mxfp4_pack(value)) if _is_expert_stack(name) else value.to(torch.bfloat16).float()


def _bf16_round(name: str, value: torch.Tensor) -> torch.Tensor:
    return value.to(torch.bfloat16).float()


def _gguf_round(name: str, value: torch.Tensor) -> torch.Tensor:
    if _is_expert_stack(name):
        return mxfp4_unpack(*mxfp4_pack(value))
    # Matrices in bf16; llama.cpp adds biases, norms and sinks in float32 only.
    return value.to(torch.bfloat16).float() if _gguf_matrix(name, value) else value


def _gguf_matrix(name: str, value: torch.Tensor) -> bool:
    return value.dim() == 2 and name.endswith(".weight")


# -- the formats ------------------------------------------------------------------------------------


def _unwrap(model):
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _has_adapter(model) -> bool:
    return bool(_lora_layers(model))


def _write_manifest(path: Path, fmt: str, base_model: str, extra: dict | None = None) -> Path:
    from .. import __name__ as package

    note = {"format": fmt, "base_model": base_model, "written_by": package, **(extra or {})}
    target = path / MANIFEST
    target.write_text(json.dumps(note, indent=2) + "\n")
    return target


def write_peft(model, path: Path, *, base_model: str) -> list[Path]:
    if not _has_adapter(model):
        raise ExportError("there is no adapter to export as peft; add one with `%oss_finetune lora` and train it")
    save_adapter(model, path)
    config_file = path / "adapter_config.json"
    config = json.loads(config_file.read_text())
    # peft leaves this empty for a model built in memory; a reader needs it to find the base.
    config["base_model_name_or_path"] = base_model
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    _write_manifest(path, "peft", base_model)
    return sorted(p for p in path.iterdir() if p.is_file())


def _save_shards(tensors: Iterator[tuple[str, torch.Tensor]], path: Path, metadata: dict[str, str]) -> list[Path]:
    """safetensors shards of at most SHARD_BYTES, named as transformers names them, with an index past one."""
    from safetensors.torch import save_file

    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    written: list[Path] = []

    def flush() -> None:
        part = path / f"model.part{len(written):05d}.safetensors"
        save_file(shards[-1], str(part), metadata=metadata)
        written.append(part)

    for name, tensor in tensors:
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > SHARD_BYTES:
            flush()
            shards.append({})
            size = 0
        shards[-1][name] = tensor.contiguous()
        size += nbytes
    flush()
    if len(written) == 1:
        final = [path / "model.safetensors"]
    else:
        final = [path / f"model-{i + 1:05d}-of-{len(written):05d}.safetensors" for i in range(len(written))]
    weight_map = {}
    for part, target, shard in zip(written, final, shards):
        part.replace(target)
        weight_map.update({name: target.name for name in shard})
    if len(final) > 1:
        total = sum(t.stat().st_size for t in final)
        index = path / "model.safetensors.index.json"
        index.write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
        final.append(index)
    return final


def _checkpoint_config(model, path: Path, quantization: dict | None) -> list[Path]:
    import copy

    base = _unwrap(model)
    config = copy.deepcopy(base.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    if quantization is not None:
        config.quantization_config = dict(quantization)
    config.architectures = ["GptOssForCausalLM"]
    config.dtype = torch.bfloat16
    config.save_pretrained(str(path))
    files = [path / "config.json"]
    generation = getattr(base, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(str(path))
        files.append(path / "generation_config.json")
    return files


def _save_tokenizer(tokenizer, path: Path) -> list[Path]:
    from ..core.chat_template import HARMONY_CHAT_TEMPLATE

    before = set(path.iterdir())
    if not getattr(tokenizer, "chat_template", None):
        # The vendored tokenizer has none; serving stacks need one to turn messages into Harmony.
        tokenizer.chat_template = HARMONY_CHAT_TEMPLATE
    tokenizer.save_pretrained(str(path))
    return sorted(set(path.iterdir()) - before)


def write_merged(model, tokenizer, path: Path, *, base_model: str, mxfp4: bool = False) -> list[Path]:
    source_blocks = _mxfp4_sources(model) if mxfp4 else {}

    def tensors() -> Iterator[tuple[str, torch.Tensor]]:
        for name, value in merged_tensors(model):
            if mxfp4 and _is_expert_stack(name):
                if name in source_blocks:  # already MXFP4 and without adapter: copied, not re-rounded
                    blocks, scales = source_blocks[name]
                else:
                    blocks, scales = mxfp4_pack(value)
                yield f"{name}_blocks", blocks.cpu()
                yield f"{name}_scales", scales.cpu()
            else:
                yield name, value.to(torch.bfloat16).cpu()

    files = _save_shards(tensors(), path, {"format": "pt"})
    files += _checkpoint_config(model, path, MXFP4_QUANTIZATION_CONFIG if mxfp4 else None)
    files += _save_tokenizer(tokenizer, path)
    files.append(_write_manifest(path, "mxfp4" if mxfp4 else "merged", base_model))
    return files


def _mxfp4_sources(model) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    found = {}
    for module_name, module in model.named_modules():
        if isinstance(module, Mxfp4Experts):
            prefix = _clean(module_name)
            for stack in EXPERT_STACKS:
                blocks = getattr(module, f"{stack}_blocks").cpu()
                experts, rows, half = blocks.shape
                found[f"{prefix}.{stack}"] = (
                    blocks.reshape(experts, rows, half * 2 // BLOCK, BLOCK // 2),
                    getattr(module, f"{stack}_scales").cpu(),
                )
    return found


# vLLM maps gpt-oss's attention projections (packed into qkv_proj) and the experts (3-D, is_3d_moe_weight);
# nothing else of gpt-oss takes a LoRA there.
VLLM_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")


def vllm_tensors(model) -> dict[str, torch.Tensor]:
    """The adapter keyed as vLLM's LoRAModel reads a gpt-oss adapter: ``base_model.model.<module>.lora_A/B.weight``;
    for the experts, gate_up_proj's factors under ``mlp.experts.base_layer`` and down_proj's under ``mlp.experts``,
    A as (experts * r, in) and B as (out, r * experts) with the expert index varying fastest in B, which
    _stack_moe_lora_weights reshapes to (experts, r, in) and (experts, out, r). vLLM asserts that both stacks
    of a layer have factors, so a stack without LoRA gets zero factors of the same rank."""
    layers = _lora_layers(model)
    out: dict[str, torch.Tensor] = {}
    experts: dict[str, dict[str, tuple[torch.Tensor, torch.Tensor, int]]] = {}
    refused = []
    for name, (layer, adapters) in layers.items():
        if len(adapters) != 1:
            raise ExportError(
                f"vllm: {name} has {len(adapters)} active adapters; vLLM serves one per request. "
                "Activate one (model.set_adapter) and export again.",
                "lora",
            )
        adapter = adapters[0]
        a = layer.lora_A[adapter].weight.detach().float().cpu()
        b = layer.lora_B[adapter].weight.detach().float().cpu()
        module, _, leaf = name.rpartition(".")
        if _is_expert_stack(name):
            experts.setdefault(module, {})[leaf] = (a, b, int(layer.num_experts))
        elif module.rsplit(".", 1)[-1] in VLLM_MODULES and leaf == "weight":
            out[f"base_model.model.{module}.lora_A.weight"] = a
            out[f"base_model.model.{module}.lora_B.weight"] = b
        else:
            refused.append(module)
    if refused:
        raise ExportError(
            f"vllm: vLLM's gpt-oss takes LoRA only on {', '.join(VLLM_MODULES)} and the experts, not on "
            f"{', '.join(sorted(set(refused)))}. Set lora.target_modules to {','.join(VLLM_MODULES)} "
            "(lora.target_experts may stay on) and train again, or export merged / mxfp4 instead.",
            "lora.target_modules",
        )
    for module, stacks in experts.items():
        rank_of = {leaf: a.shape[0] // n for leaf, (a, _, n) in stacks.items()}
        for leaf, key in (
            ("gate_up_proj", f"base_model.model.{module}.base_layer"),
            ("down_proj", f"base_model.model.{module}"),
        ):
            if leaf in stacks:
                a, b, _ = stacks[leaf]
            else:
                a, b = _zero_expert_factors(model, module, leaf, next(iter(rank_of.values())))
            out[f"{key}.lora_A.weight"] = a
            out[f"{key}.lora_B.weight"] = b
    if not out:
        raise ExportError("there is no adapter to export as vllm; add one with `%oss_finetune lora` and train it")
    return out


def _zero_expert_factors(model, module: str, leaf: str, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    experts = _unwrap(model).get_submodule(module)
    while hasattr(experts, "base_layer"):
        experts = experts.base_layer
    count, width_in, width_out = getattr(experts, leaf).shape
    return torch.zeros(count * rank, width_in), torch.zeros(width_out, rank * count)


def write_vllm(model, path: Path, *, base_model: str) -> list[Path]:
    from safetensors.torch import save_file

    peft_config = _active_peft_config(model)
    tensors = vllm_tensors(model)
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": int(peft_config.r),
        "lora_alpha": peft_config.lora_alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_rslora": bool(peft_config.use_rslora),
        "use_dora": False,
        "fan_in_fan_out": False,
        "target_modules": sorted({k.split(".")[-3] for k in tensors if ".experts." not in k})
        + (["experts"] if any(".experts." in k for k in tensors) else []),
        "modules_to_save": None,
    }
    (path / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    manifest = _write_manifest(path, "vllm", base_model, {"layout_from": VLLM_SOURCE})
    return [path / "adapter_model.safetensors", path / "adapter_config.json", manifest]


def _active_peft_config(model):
    configs = getattr(model, "peft_config", None) or {}
    name = getattr(model, "active_adapter", "default")
    if isinstance(name, list):
        name = name[0]
    if name not in configs:
        raise ExportError("there is no adapter to export; add one with `%oss_finetune lora` and train it")
    config = configs[name]
    if getattr(config, "use_dora", False):
        raise ExportError("vllm: DoRA adapters do not load in vLLM; train with plain LoRA", "lora")
    if getattr(config, "rank_pattern", None) or getattr(config, "alpha_pattern", None):
        # vLLM scales every layer by the one alpha / r of adapter_config.json.
        raise ExportError(
            "vllm: vLLM takes one rank and alpha for all layers; drop rank_pattern / alpha_pattern", "lora"
        )
    return config


def read_vllm_adapter(path: Path, num_experts: int) -> dict[str, dict[str, list[torch.Tensor]]]:
    """What vLLM makes of the folder, following its loader (VLLM_SOURCE): module -> factors. Attention
    modules give one (A, B); an experts module gives [gate_up A, down A] as (experts, r, in) and
    [gate_up B, down B] as (experts, out, r)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path / "adapter_model.safetensors"))
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        parts = key.split(".")
        if parts[-1] != "weight" or parts[-2] not in ("lora_A", "lora_B"):
            raise ExportMismatch(
                f"vllm: {key} is not a LoRA factor vLLM reads (expected ...lora_A.weight / lora_B.weight)"
            )
        module = ".".join(parts[2:-2]).replace(".self_attn.", ".attn.")
        modules.setdefault(module, {})[parts[-2]] = value
    read: dict[str, dict[str, list[torch.Tensor]]] = {}
    for module, factors in modules.items():
        if module.endswith(".base_layer"):
            continue
        if module.endswith(".experts"):
            gate_up = modules.get(module + ".base_layer")
            if gate_up is None:
                raise ExportMismatch(f"vllm: {module} has down_proj factors but no gate_up_proj (.base_layer) ones")
            stacked: dict[str, list[torch.Tensor]] = {"lora_A": [], "lora_B": []}
            for part in (gate_up, factors):
                a, b = part["lora_A"], part["lora_B"]
                stacked["lora_A"].append(a.reshape(num_experts, -1, a.shape[-1]))
                stacked["lora_B"].append(b.reshape(b.shape[0], -1, num_experts).permute(2, 0, 1).contiguous())
            read[module] = stacked
        else:
            read[module] = {"lora_A": [factors["lora_A"]], "lora_B": [factors["lora_B"]]}
    return read


def _vllm_as_peft(read: dict[str, dict[str, list[torch.Tensor]]]) -> dict[str, torch.Tensor]:
    """vLLM's reading turned back into peft's keys, so that peft can run it beside the live adapter."""
    state = {}
    for module, factors in read.items():
        name = "base_model.model." + module.replace(".attn.", ".self_attn.")
        if module.endswith(".experts"):
            for index, prefix in ((0, f"{name}.base_layer"), (1, name)):
                a, b = factors["lora_A"][index], factors["lora_B"][index]
                state[f"{prefix}.lora_A.weight"] = a.reshape(-1, a.shape[-1])
                state[f"{prefix}.lora_B.weight"] = b.permute(1, 2, 0).reshape(b.shape[1], -1)
        else:
            state[f"{name}.lora_A.weight"] = factors["lora_A"][0]
            state[f"{name}.lora_B.weight"] = factors["lora_B"][0]
    return state


# GGUF: llama.cpp's gpt-oss ("gpt-oss" architecture) names and layout.
GGUF_ARCH = "gpt-oss"
_GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "post_attention_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.o_proj.bias": "attn_output.bias",
    "self_attn.sinks": "attn_sinks.weight",
    "mlp.router.weight": "ffn_gate_inp.weight",
    "mlp.router.bias": "ffn_gate_inp.bias",
}


def gguf_mxfp4_blocks(blocks: torch.Tensor, scales: torch.Tensor):
    """OpenAI's MXFP4 (two consecutive codes a byte) -> ggml's block_mxfp4 rows: per block of 32, the scale
    byte, then 16 bytes with code j in the low nibble and code j + 16 in the high one."""
    import numpy as np

    blocks, scales = blocks.cpu(), scales.cpu()
    codes = torch.stack((blocks & 0x0F, blocks >> 4), dim=-1).reshape(*blocks.shape[:-1], BLOCK)
    packed = codes[..., : BLOCK // 2] | (codes[..., BLOCK // 2 :] << 4)
    rows = torch.cat((scales.unsqueeze(-1), packed), dim=-1)  # experts, out, groups, 17
    return np.ascontiguousarray(rows.reshape(rows.shape[0], rows.shape[1], -1).numpy())


def write_gguf(model, tokenizer, path: Path, *, base_model: str) -> list[Path]:
    try:
        import gguf
        import numpy as np
    except ImportError:
        raise ExportError(
            "gguf: the gguf package is not installed; `pip install 'oss-finetune[export]'` (or `pip install gguf`)"
        ) from None
    base = _unwrap(model)
    config = base.config
    path.mkdir(parents=True, exist_ok=True)
    target = path / "model.gguf"
    writer = gguf.GGUFWriter(str(target), GGUF_ARCH)
    writer.add_name(Path(base_model).name or base_model)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_MXFP4_MOE)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_expert_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_key_length(config.head_dim)
    writer.add_value_length(config.head_dim)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_expert_count(config.num_local_experts)
    writer.add_expert_used_count(config.num_experts_per_tok)
    writer.add_sliding_window(config.sliding_window)
    rope = dict(getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {})
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 150000.0))))
    if rope.get("rope_type", rope.get("type")) == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    _gguf_vocab(writer, tokenizer, config.vocab_size, gguf)

    experts: dict[str, torch.Tensor] = {}
    for name, value in merged_tensors(model):
        if name in _GGUF_NAMES:
            _gguf_plain(writer, _GGUF_NAMES[name], value, gguf, np)
            continue
        parts = name.split(".")
        layer, rest = int(parts[2]), ".".join(parts[3:])
        if rest in _GGUF_LAYER:
            _gguf_plain(writer, f"blk.{layer}.{_GGUF_LAYER[rest]}", value, gguf, np)
        elif rest == "mlp.experts.gate_up_proj":
            blocks, scales = mxfp4_pack(value)
            # gpt-oss interleaves gate and up along the output; llama.cpp keeps them as two tensors.
            for which, rows in (("gate", slice(0, None, 2)), ("up", slice(1, None, 2))):
                data = gguf_mxfp4_blocks(blocks[:, rows], scales[:, rows])
                writer.add_tensor(
                    f"blk.{layer}.ffn_{which}_exps.weight", data, raw_dtype=gguf.GGMLQuantizationType.MXFP4
                )
        elif rest == "mlp.experts.down_proj":
            blocks, scales = mxfp4_pack(value)
            writer.add_tensor(
                f"blk.{layer}.ffn_down_exps.weight",
                gguf_mxfp4_blocks(blocks, scales),
                raw_dtype=gguf.GGMLQuantizationType.MXFP4,
            )
        elif rest == "mlp.experts.gate_up_proj_bias":
            _gguf_plain(writer, f"blk.{layer}.ffn_gate_exps.bias", value[:, 0::2], gguf, np)
            _gguf_plain(writer, f"blk.{layer}.ffn_up_exps.bias", value[:, 1::2], gguf, np)
        elif rest == "mlp.experts.down_proj_bias":
            _gguf_plain(writer, f"blk.{layer}.ffn_down_exps.bias", value, gguf, np)
        else:
            experts[name] = value
    if experts:
        raise ExportError(f"gguf: {next(iter(experts))} has no llama.cpp gpt-oss name; this is not a GPT-OSS model")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return [target, _write_manifest(path, "gguf", base_model, {"file": target.name})]


def _gguf_plain(writer, name: str, value: torch.Tensor, gguf, np) -> None:
    value = value.cpu().contiguous()
    if _gguf_matrix(name, value):
        # bf16 like the released weights; numpy has no bf16, so its bits go as uint16.
        bits = value.to(torch.bfloat16).view(torch.uint16).numpy()
        writer.add_tensor(name, bits, raw_shape=bits.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    else:
        writer.add_tensor(name, value.float().numpy())


def _gguf_vocab(writer, tokenizer, vocab_size: int, gguf) -> None:
    """The o200k_harmony vocabulary as llama.cpp's BPE reads it (pre-tokenizer gpt-4o), padded to the embedding."""
    from ..core.chat_template import HARMONY_CHAT_TEMPLATE

    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    if backend is None:
        raise ExportError("gguf: the tokenizer has no tokenizer.json behind it; load the model's own tokenizer")
    model = json.loads(backend.to_str())["model"]
    vocab = model["vocab"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    added = {t.content: (index, t.special) for index, t in _added_tokens(tokenizer)}
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    kinds = [gguf.TokenType.UNUSED] * vocab_size
    for text, index in vocab.items():
        if index < vocab_size:
            tokens[index], kinds[index] = text, gguf.TokenType.NORMAL
    for text, (index, special) in added.items():
        if index < vocab_size:
            tokens[index] = text
            kinds[index] = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-4o")
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges(merges)
    from ..core.tokenizer import END_OF_TEXT, RETURN, START_OF_TEXT

    writer.add_bos_token_id(START_OF_TEXT)
    writer.add_eos_token_id(RETURN)
    writer.add_pad_token_id(END_OF_TEXT)
    writer.add_add_bos_token(False)
    writer.add_chat_template(getattr(tokenizer, "chat_template", None) or HARMONY_CHAT_TEMPLATE)


def _added_tokens(tokenizer):
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return list(decoder.items())


# -- verification -----------------------------------------------------------------------------------


def probe_prompts(tokenizer, prompts=PROBES) -> list[list[int]]:
    from ..core.harmony import Conversation, Message, render

    return [
        list(
            render(
                Conversation([Message("user", text)], reasoning_effort="low"),
                mode="prompt",
                date=PROBE_DATE,
                tokenizer=tokenizer,
            ).ids
        )
        for text in prompts
    ]


@dataclass
class _Reference:
    sequences: list[list[int]]  # prompt + greedy tokens
    prompt_lengths: list[int]
    logits: list[torch.Tensor]  # per probe: (new tokens, vocab) float32 on the CPU


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _scores(model, sequence: list[int], prompt_length: int) -> torch.Tensor:
    """Logits at each generated position (the step that chose it), float32 on the CPU."""
    ids = torch.tensor([sequence[:-1]], device=_device(model))
    with torch.no_grad():
        # Only the generated positions: the output layer over 201,088 rows is most of a small model's work.
        logits = model(input_ids=ids, logits_to_keep=len(sequence) - prompt_length).logits[0]
    return logits.float().cpu()


def _greedy_reference(model, prompts: list[list[int]], new_tokens: int) -> _Reference:
    sequences, logits = [], []
    with torch.no_grad():
        for prompt in prompts:
            sequence = list(prompt)
            for _ in range(new_tokens):
                ids = torch.tensor([sequence], device=_device(model))
                sequence.append(int(model(input_ids=ids, logits_to_keep=1).logits[0, -1].argmax()))
            sequences.append(sequence)
            logits.append(_scores(model, sequence, len(prompt)))
    return _Reference(sequences, [len(p) for p in prompts], logits)


@contextlib.contextmanager
def as_stored(model, rounding: Callable[[str, torch.Tensor], torch.Tensor] | None) -> Iterator[Any]:
    """The live model with every weight as the format stores it (adapter folded in, then rounded), in place;
    the originals wait on the CPU and come back bit for bit. ``rounding`` None: the live model as it is."""
    if rounding is None:
        yield model
        return
    deltas = _lora_layers(model)
    kept: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    try:
        with torch.no_grad():
            for name, param in _base_parameters(model):
                value = param.detach().float()
                for layer, adapters in [deltas[name]] if name in deltas else []:
                    for adapter in adapters:
                        value = value + layer.get_delta_weight(adapter).float()
                stored = rounding(name, value).to(param.dtype)
                if torch.equal(stored, param.detach()):
                    continue
                kept.append((param, param.detach().to("cpu", copy=True)))
                param.copy_(stored)
        with adapter_enabled(model, False):
            yield model
    finally:
        with torch.no_grad():
            for param, original in kept:
                param.copy_(original.to(param.device))


def _tolerance(dtype: torch.dtype, logits: torch.Tensor, relative: float | None = None) -> float:
    # float32 arithmetic in another order (peft's unmerged products, another kernel) moves logits by ~1e-6
    # of their range; bf16 by ~1e-2.
    scale = max(1.0, float(logits.abs().max()))
    rel = relative if relative is not None else (2e-4 if dtype == torch.float32 else 3e-2)
    return rel * scale


def _compare(
    fmt: str,
    where: Path,
    reference: _Reference,
    scores: list[torch.Tensor],
    tolerance: float,
    tokenizer,
    prompts,
    outliers: float = 0.0,
) -> tuple[float, int, int]:
    """(largest logit difference within tolerance, greedy tokens equal, positions beyond tolerance). Up to
    ``outliers`` (a share) of the positions may be beyond the tolerance and are then not held to the greedy
    token either: a consumer that rounds activations can route a token whose top-k experts nearly tie to
    other experts, which moves that one position a lot; a wrong file moves every position."""
    worst, tokens = 0.0, 0
    beyond: list[tuple[int, int, float]] = []
    total = sum(w.shape[0] for w in reference.logits)
    for probe, (sequence, start, want, got) in enumerate(
        zip(reference.sequences, reference.prompt_lengths, reference.logits, scores)
    ):
        if got.shape != want.shape:
            raise ExportMismatch(
                f"{fmt} export at {where} gives logits of shape {tuple(got.shape)} for probe {probe + 1}, "
                f"the live model {tuple(want.shape)}: its vocabulary or layout differs"
            )
        per_position = (got - want).abs().max(dim=-1).values
        for position in range(want.shape[0]):
            diff = float(per_position[position])
            if diff > tolerance and len(beyond) + 1 <= outliers * total:
                beyond.append((probe, position, diff))
                continue
            chosen, expected = int(got[position].argmax()), sequence[start + position]
            # A near tie may flip under rounding; a clear preference may not.
            margin = float(want[position, expected] - want[position, chosen])
            if chosen != expected and margin > tolerance:
                raise ExportMismatch(
                    f"{fmt} export at {where} does not answer like the live model: probe {probe + 1} "
                    f"({_probe_text(probe, prompts)}), generated token {position + 1}: the live model "
                    f"picks {_token(tokenizer, expected)}, the export picks {_token(tokenizer, chosen)} "
                    f"(the live model prefers its token by {margin:.3g}, tolerance {tolerance:.2g}). "
                    "The files are left in place to inspect; do not serve them."
                )
            if diff > tolerance:
                raise ExportMismatch(
                    f"{fmt} export at {where} does not score like the live model: probe {probe + 1}, generated "
                    f"token {position + 1} ({_token(tokenizer, expected)}): logits differ by {diff:.3g}, more than "
                    f"the tolerance {tolerance:.2g} the format explains"
                    + (f" (beyond it at {len(beyond) + 1} of {total} positions)" if outliers else "")
                    + ". Do not serve these files."
                )
            worst = max(worst, diff)
            tokens += 1
    return worst, tokens, len(beyond)


def _probe_text(probe: int, prompts) -> str:
    return repr(PROBES[probe]) if len(prompts) <= len(PROBES) and probe < len(PROBES) else "a custom prompt"


def _token(tokenizer, token_id: int) -> str:
    try:
        text = tokenizer.decode([token_id])
    except Exception:  # noqa: BLE001 - a name is a courtesy; the id is the fact
        text = "?"
    return f"{text!r} (id {token_id})"


def _compute_dtype(model) -> torch.dtype:
    return next(model.parameters()).dtype


def _reload_transformers(path: Path, dtype: torch.dtype, device: torch.device, *, mxfp4: bool = False):
    import warnings

    from transformers import GptOssForCausalLM
    from transformers.utils import logging as transformers_logging

    kwargs: dict[str, Any] = {}
    if mxfp4:
        from transformers import Mxfp4Config

        # The same numbers as MXFP4 kernels give, without the kernels transformers fetches from the hub on a GPU.
        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)

    bars = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = GptOssForCausalLM.from_pretrained(str(path), dtype=dtype, device_map={"": str(device)}, **kwargs)
    finally:
        if bars:
            transformers_logging.enable_progress_bar()
    return loaded.eval()


def _verify_transformers(model, tokenizer, fmt: str, path: Path, rounding, prompts) -> Verification:
    dtype = _compute_dtype(model)
    with as_stored(model, rounding) as stored:
        reference = _greedy_reference(stored, prompts, NEW_TOKENS)
    live = [_scores(model, s, n) for s, n in zip(reference.sequences, reference.prompt_lengths)]
    device = _device(model)
    with _room_for(model, _weights(model) * dtype.itemsize):
        reloaded = _reload_transformers(path, dtype, device, mxfp4=fmt == "mxfp4")
        try:
            quant = getattr(reloaded.config, "quantization_config", None)
            if fmt == "merged" and quant is not None:
                raise ExportMismatch(
                    f"merged export at {path} still has a quantization_config ({quant}); delete it from config.json"
                )
            scores = [_scores(reloaded, s, n) for s, n in zip(reference.sequences, reference.prompt_lengths)]
        finally:
            del reloaded
            if device.type == "cuda":
                torch.cuda.empty_cache()
    tolerance = max(_tolerance(dtype, w) for w in reference.logits)
    worst, tokens, _ = _compare(fmt, path, reference, scores, tolerance, tokenizer, prompts)
    drift = max(float((a - b).abs().max()) for a, b in zip(live, reference.logits))
    return Verification("transformers", len(prompts), tokens, worst, tolerance, drift)


def _weights(model) -> int:
    """How many weights the model has once nothing is packed (MXFP4 holds two a byte)."""
    packed = sum(
        getattr(m, f"{stack}_blocks").numel() * 2
        for m in model.modules()
        if isinstance(m, Mxfp4Experts)
        for stack in EXPERT_STACKS
    )
    return packed + sum(p.numel() for _, p in _base_parameters(model))


@contextlib.contextmanager
def _room_for(model, need: int) -> Iterator[None]:
    """A second copy of gpt-oss-20b in bf16 does not fit one 80 GB GPU beside the first: when the GPU lacks
    ``need`` bytes, the live model waits on the host (its parameters keep their identity) while the export
    is checked, and comes back after."""
    device = _device(model)
    if device.type != "cuda" or torch.cuda.mem_get_info(device)[0] > 1.1 * need:
        yield
        return
    model.to("cpu")
    torch.cuda.empty_cache()
    try:
        yield
    finally:
        model.to(device)


def _verify_adapter(
    model, tokenizer, fmt: str, path: Path, prompts, state: dict[str, torch.Tensor] | None
) -> Verification:
    """The adapter read back from disk put beside the live one on the same base, by peft, then compared."""
    from peft import set_peft_model_state_dict

    name = "export_check"
    active = model.active_adapter
    reference = _greedy_reference(model, prompts, NEW_TOKENS)
    # set_adapter makes the adapter it activates trainable and freezes the others; training resumes after this.
    trainable = {n: p.requires_grad for n, p in model.named_parameters()}
    try:
        if state is None:
            model.load_adapter(str(path), adapter_name=name)
        else:
            model.add_adapter(name, model.peft_config[active])
            result = set_peft_model_state_dict(model, state, adapter_name=name)
            missing = [k for k in getattr(result, "missing_keys", []) if f".{name}." in k and "lora_" in k]
            if missing:
                raise ExportMismatch(f"{fmt} export at {path} lacks factors peft needs, the first {missing[0]}")
        model.set_adapter(name)
        scores = [_scores(model, s, n) for s, n in zip(reference.sequences, reference.prompt_lengths)]
    finally:
        model.set_adapter(active)
        if name in model.peft_config:
            model.delete_adapter(name)
        for param_name, param in model.named_parameters():
            if param_name in trainable:
                param.requires_grad_(trainable[param_name])
    tolerance = max(_tolerance(_compute_dtype(model), w) for w in reference.logits)
    worst, tokens, _ = _compare(fmt, path, reference, scores, tolerance, tokenizer, prompts)
    return Verification(
        "peft" if state is None else "peft, reading the file as vLLM's loader does",
        len(prompts),
        tokens,
        worst,
        tolerance,
    )


def _verify_gguf(model, tokenizer, path: Path, prompts) -> Verification:
    target = path / "model.gguf"
    try:
        from llama_cpp import Llama
    except ImportError:
        return _verify_gguf_tensors(model, target)
    dtype = _compute_dtype(model)
    with as_stored(model, _gguf_round) as stored:
        reference = _greedy_reference(stored, prompts, NEW_TOKENS)
    live = [_scores(model, s, n) for s, n in zip(reference.sequences, reference.prompt_lengths)]
    longest = max(len(s) for s in reference.sequences)
    llm = Llama(
        model_path=str(target),
        n_ctx=max(64, longest + 8),
        logits_all=True,
        verbose=False,
        n_threads=torch.get_num_threads(),
        seed=0,
    )
    scores = []
    try:
        for sequence, start in zip(reference.sequences, reference.prompt_lengths):
            llm.reset()
            llm.eval(sequence[:-1] if len(sequence) > start else sequence)
            rows = torch.tensor(llm.scores[start - 1 : len(sequence) - 1], dtype=torch.float32)
            scores.append(rows)
        # The vocabulary in the file must turn the Harmony text back into the same ids, special tokens included.
        for probe, prompt in enumerate(prompts):
            ids = llm.tokenize(tokenizer.decode(prompt).encode(), add_bos=False, special=True)
            if list(ids) != list(prompt):
                at = next((i for i, (a, b) in enumerate(zip(ids, prompt)) if a != b), min(len(ids), len(prompt)))
                mine = _token(tokenizer, prompt[at]) if at < len(prompt) else "the end"
                theirs = _token(tokenizer, ids[at]) if at < len(ids) else "the end"
                raise ExportMismatch(
                    f"gguf export at {path}: llama.cpp tokenizes probe {probe + 1} differently from token {at + 1} "
                    f"on: {theirs} where the model's tokenizer has {mine}; the vocabulary in the file is wrong"
                )
    finally:
        llm.close()
    # llama.cpp multiplies MXFP4 weights by activations rounded to 8 bits and bf16 weights by bf16
    # activations: about 1.5% of the logit range is its arithmetic (measured on embedded:tiny), not the file.
    tolerance = max(_tolerance(dtype, w, relative=GGUF_RELATIVE_TOLERANCE) for w in reference.logits)
    worst, tokens, beyond = _compare(
        "gguf", path, reference, scores, tolerance, tokenizer, prompts, outliers=GGUF_ROUTING_OUTLIERS
    )
    drift = max(float((a - b).abs().max()) for a, b in zip(live, reference.logits))
    note = "llama.cpp tokenizes the probes' Harmony text to the same ids" + (
        f"; {beyond} more position(s) beyond the tolerance, within the {GGUF_ROUTING_OUTLIERS:.0%} allowed for "
        "expert-routing near ties that llama.cpp's rounding can flip"
        if beyond
        else ""
    )
    return Verification("llama.cpp (llama-cpp-python)", len(prompts), tokens, worst, tolerance, drift, note)


GGUF_RELATIVE_TOLERANCE = 3e-2
GGUF_ROUTING_OUTLIERS = 0.1


def _verify_gguf_tensors(model, target: Path) -> Verification:
    """Without llama.cpp: every tensor read back with the gguf package and compared with what was meant."""
    import numpy as np
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(str(target))
    read = {t.name: t for t in reader.tensors}
    checked = 0
    worst = 0.0
    for name, value in merged_tensors(model):
        value = value.cpu()
        parts = name.split(".")
        if name.endswith("mlp.experts.down_proj"):
            key = f"blk.{parts[2]}.ffn_down_exps.weight"
            want = _gguf_round(name, value).transpose(1, 2)
        elif name.endswith("mlp.experts.gate_up_proj"):
            key = f"blk.{parts[2]}.ffn_gate_exps.weight"
            want = _gguf_round(name, value).transpose(1, 2)[:, 0::2]
        elif name in _GGUF_NAMES:
            key, want = _GGUF_NAMES[name], _gguf_round(name, value)
        else:
            continue
        if key not in read:
            raise ExportMismatch(f"gguf export at {target} lacks {key}")
        tensor = read[key]
        got = dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(tuple(want.shape))
        diff = float(np.abs(got.astype(np.float32) - want.numpy()).max())
        if diff > 1e-6 * max(1.0, float(want.abs().max())):
            raise ExportMismatch(f"gguf export at {target}: {key} reads back {diff:.3g} away from the weights written")
        worst = max(worst, diff)
        checked += 1
    return Verification(
        "the gguf package",
        note=f"{checked} tensors read back exactly; llama-cpp-python is not installed, so no logits were compared "
        "(`pip install 'oss-finetune[export]'` builds it)",
    )


# -- the entry point --------------------------------------------------------------------------------


def export(
    model,
    tokenizer,
    fmt: str,
    path: str | Path,
    *,
    base_model: str,
    verify: bool = True,
    prompts: list[list[int]] | None = None,
    overwrite: bool = True,
    on_progress: Callable[[str, str], Any] | None = None,
) -> ExportResult:
    """Write ``model`` (a peft model with its adapter, or a plain one for merged / mxfp4 / gguf) in ``fmt`` under
    ``path`` and verify it. Raises ExportMismatch, naming the first differing token, when the export does
    not behave like the live model. ``on_progress(stage, line)`` hears "writing" and "checking" as each begins."""
    tell = on_progress or (lambda stage, line: None)
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}", "format")
    path = Path(path).expanduser()
    if path.exists() and any(path.iterdir()):
        if not overwrite:
            raise ExportError(f"{path} is not empty; name another folder or remove it", "path")
        if (path / MANIFEST).exists():
            shutil.rmtree(path)  # our own earlier export; anything else (a run's adapter, a checkpoint) is kept
        else:
            raise ExportError(f"{path} holds files that are not an export of ours; name another folder", "path")
    path.mkdir(parents=True, exist_ok=True)
    model.eval()
    tell("writing", f"writing {fmt} to {path}")
    start = time.perf_counter()
    if fmt == "peft":
        files = write_peft(model, path, base_model=base_model)
    elif fmt == "vllm":
        files = write_vllm(model, path, base_model=base_model)
    elif fmt == "gguf":
        files = write_gguf(model, tokenizer, path, base_model=base_model)
    else:
        files = write_merged(model, tokenizer, path, base_model=base_model, mxfp4=fmt == "mxfp4")
    result = ExportResult(fmt, path, files, time.perf_counter() - start)
    if not verify:
        return result
    probes = len(prompts) if prompts else len(PROBES)
    tell(
        "checking",
        f"wrote {_size(result.bytes)} in {result.seconds:.1f} s; reading it back with {consumer(fmt)} and comparing "
        f"{probes} probes with the live model",
    )
    result.verification = verify_export(model, tokenizer, fmt, path, prompts)
    _record(result)
    return result


def verify_export(model, tokenizer, fmt: str, path: str | Path, prompts: list[list[int]] | None = None) -> Verification:
    """Read an export under ``path`` back with its consumer and compare it with ``model`` on ``prompts``
    (default: PROBES rendered in Harmony); raises ExportMismatch naming the first differing token."""
    path = Path(path)
    prompts = prompts or probe_prompts(tokenizer)
    model.eval()
    if fmt == "peft":
        return _verify_adapter(model, tokenizer, fmt, path, prompts, None)
    if fmt == "vllm":
        read = read_vllm_adapter(path, int(_unwrap(model).config.num_local_experts))
        return _verify_adapter(model, tokenizer, fmt, path, prompts, _vllm_as_peft(read))
    if fmt == "gguf":
        return _verify_gguf(model, tokenizer, path, prompts)
    if fmt in ("merged", "mxfp4"):
        return _verify_transformers(
            model, tokenizer, fmt, path, _mxfp4_round if fmt == "mxfp4" else _bf16_round, prompts
        )
    raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}", "format")


def consumer(fmt: str) -> str:
    """Who reads an export of ``fmt`` back for its check."""
    if fmt == "gguf":
        if importlib.util.find_spec("llama_cpp") is None:
            return "the gguf package (llama-cpp-python is not installed, so no logits)"
        return "llama.cpp (llama-cpp-python)"
    return {"peft": "peft", "vllm": "peft, as vLLM's loader reads the file"}.get(fmt, "transformers")


# vLLM accepts only these as --max-lora-rank (vllm/config/lora.py, MaxLoRARanks).
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def serve_command(fmt: str, path: str | Path, base_model: str) -> str:
    """What serves an export written under ``path`` (for peft, the line that loads it), as docs/export.md lists."""
    folder = Path(path)
    if fmt == "peft":
        return f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({base_model!r}), {str(folder)!r})"
    if fmt in ("merged", "mxfp4"):
        return f"vllm serve {shlex.quote(str(folder))}"
    if fmt == "vllm":
        config = folder / "adapter_config.json"
        rank = int(json.loads(config.read_text()).get("r", 8)) if config.is_file() else 8
        limit = next((r for r in VLLM_MAX_LORA_RANKS if r >= rank), rank)
        return (
            f"vllm serve {shlex.quote(base_model)} --enable-lora --lora-modules mine={shlex.quote(str(folder))} "
            f"--max-lora-rank {limit}"
        )
    if fmt == "gguf":
        return f"llama-server -m {shlex.quote(str(folder / 'model.gguf'))} --jinja"
    raise ExportError(f"format {fmt!r} is not one of {', '.join(FORMATS)}", "format")


def _record(result: ExportResult) -> None:
    manifest = result.path / MANIFEST
    if manifest.exists() and result.verification is not None:
        note = json.loads(manifest.read_text())
        v = result.verification
        note["verified"] = {
            "consumer": v.consumer,
            "probes": v.probes,
            "greedy_tokens_equal": v.tokens,
            "max_logit_diff": v.max_logit_diff,
            "tolerance": v.tolerance,
            "quantization_diff": v.quantization_diff,
            "note": v.note,
        }
        manifest.write_text(json.dumps(note, indent=2) + "\n")
