"""The base model and its LoRA adapter.

``load_model`` takes the ``model`` section of a fine-tune config (schema/finetune-config.schema.json)
and returns the model, its tokenizer and a line that tells the person which device and dtype were
chosen and why. ``apply_lora`` takes the ``lora`` section and wraps the model with a peft adapter.

Two kinds of model go through the same class, ``GptOssForCausalLM``:

- a hub id or a local folder of the GPT-OSS family (MXFP4 checkpoints are dequantized to bf16,
  bitsandbytes 4-bit on request where CUDA and bitsandbytes exist);
- ``embedded:tiny``: the real architecture (MoE experts, attention sinks, alternating sliding
  window, YaRN rope) at toy width with the real 201,088-row vocabulary, built from a seed on the CPU
  in well under a second, so that notebooks and tests run without a GPU or the hub.
- ``embedded:tiny-base``: the same toy trained once to write Harmony and reason in English, cached
  on disk (see embedded.py), so that a tutorial's LoRA run has something to change.
- ``embedded:gpt-oss-20b-random``: the full gpt-oss-20b architecture with seeded random bf16 weights,
  drawn on the GPU, so that the whole GPU path (memory, speed, generation) is exercised without the
  hub. Its outputs mean nothing.
- ``embedded:gpt-oss-120b-random``: the same for gpt-oss-120b (36 layers, 128 experts); its bf16
  weights (217 GiB) fit no single GPU, so it loads only with ``mxfp4_experts``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..core.config import ConfigBase, section_dict
from ..core.errors import UserError
from ..core.tokenizer import CALL, END_OF_TEXT, RETURN, VOCAB_SIZE
from ..core.tokenizer import EMBEDDED as EMBEDDED_TINY
from . import auto, sources
from .adapter import peft_quietly

PAD_TOKEN_ID = END_OF_TEXT  # <|endoftext|>, the pad of the released checkpoints
RETURN_TOKEN_ID = RETURN  # <|return|>, the end of a finished assistant turn
CALL_TOKEN_ID = CALL  # <|call|>, the end of a tool call

# The rope of the released checkpoints: YaRN x32 over a 4,096-token original context.
_YARN = {
    "rope_type": "yarn",
    "rope_theta": 150000.0,
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}

TINY_SEED = 1234


def _yarn() -> dict:
    return dict(_YARN)


def gpt_oss_20b_config(**overrides: Any):
    """The architecture of openai/gpt-oss-20b (24 layers, 32 experts, 4 per token), without weights."""
    from transformers import GptOssConfig

    values = dict(
        num_hidden_layers=24,
        num_local_experts=32,
        num_experts_per_tok=4,
        vocab_size=VOCAB_SIZE,
        hidden_size=2880,
        intermediate_size=2880,
        head_dim=64,
        num_attention_heads=64,
        num_key_value_heads=8,
        sliding_window=128,
        max_position_embeddings=131072,
        rope_parameters=_yarn(),
        rms_norm_eps=1e-5,
        attention_bias=True,
        tie_word_embeddings=False,
        router_aux_loss_coef=0.9,
        swiglu_limit=7.0,
        pad_token_id=PAD_TOKEN_ID,
        eos_token_id=RETURN_TOKEN_ID,
    )
    values.update(overrides)
    return GptOssConfig(**values)


def gpt_oss_120b_config(**overrides: Any):
    """The architecture of openai/gpt-oss-120b: gpt-oss-20b's, 36 layers deep with 128 experts (4 per token)."""
    return gpt_oss_20b_config(**{"num_hidden_layers": 36, "num_local_experts": 128, **overrides})


def tiny_config(**overrides: Any):
    """The embedded model's architecture: every GPT-OSS feature, at a width a laptop CPU trains in seconds.

    The hidden size stays small because on a CPU the 201,088-row embedding and output layer cost more
    than all the layers together. The sliding window is 16 tokens (128 in the real model) so that short
    test sequences actually exercise the windowed layers.
    """
    return gpt_oss_20b_config(
        **{
            "num_hidden_layers": 2,
            "num_local_experts": 4,
            "num_experts_per_tok": 2,
            "hidden_size": 64,
            "intermediate_size": 64,
            "head_dim": 16,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "sliding_window": 16,
            # transformers' default, which every embedded model was built and cached with.
            "router_aux_loss_coef": 0.001,
            # Wider than the real 0.02 so that the untrained toy already has peaked, token-specific
            # logits; with 0.02 at width 64 every output is near uniform and nothing looks learned.
            "initializer_range": 0.1,
            **overrides,
        }
    )


@dataclass
class LoadedModel:
    """What ``load_model`` returns. ``description`` is the line to show the person."""

    model: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype
    name_or_path: str
    description: str
    embedded: bool = False
    quantization: str | None = None
    config: dict = field(default_factory=dict)
    # From load_model_on_meta: the checkpoint the weights are still to be read from, each rank its share.
    weights: Any = None

    def __repr__(self) -> str:  # the notebook shows this when the cell ends with the object
        return f"LoadedModel({self.description})"


class ModelLoadError(UserError, RuntimeError):
    """The model could not be loaded; the message says what to change."""


config_section = section_dict  # one section, validated, with its defaults (core.config)


def _model_section(model_config: ConfigBase | dict | None) -> dict:
    return config_section("model", model_config)


def _lora_section(lora_config: ConfigBase | dict | None) -> dict:
    return config_section("lora", lora_config)


_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def choose_device_and_dtype(device: str = "auto", dtype: str = "auto") -> tuple[torch.device, torch.dtype, str]:
    """Resolve 'auto' settings; the third value is the reason, in words, for the line shown to the person."""
    cuda = torch.cuda.is_available()
    reasons = []
    if device == "auto":
        if cuda:
            chosen_device = torch.device("cuda", torch.cuda.current_device())
            reasons.append(f"device cuda: found {torch.cuda.get_device_name(chosen_device)}")
        else:
            chosen_device = torch.device("cpu")
            reasons.append("device cpu: no CUDA GPU found")
    elif device == "cuda":
        if not cuda:
            raise ModelLoadError(
                "device='cuda' was asked for, but torch sees no CUDA GPU "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). "
                "Use device='auto' or 'cpu'."
            )
        chosen_device = torch.device("cuda", torch.cuda.current_device())
        reasons.append(f"device cuda: asked for ({torch.cuda.get_device_name(chosen_device)})")
    else:
        chosen_device = torch.device("cpu")
        reasons.append("device cpu: asked for")

    on_gpu = chosen_device.type == "cuda"
    name, reason = auto.weight_dtype(dtype, on_gpu=on_gpu, bf16_supported=on_gpu and torch.cuda.is_bf16_supported())
    chosen_dtype = _DTYPES[name]
    reasons.append(reason)
    return chosen_device, chosen_dtype, "; ".join(reasons)


def build_embedded_model(
    name: str = EMBEDDED_TINY,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    attn_implementation: str = "eager",
    mxfp4_experts: bool = False,
):
    """Build a registered embedded model (see sources.py): the same weights on every machine."""
    try:
        source = sources.source_for(name)
    except LookupError as error:
        raise ModelLoadError(str(error)) from None
    return source.build(
        dtype=dtype, device=device, attn_implementation=attn_implementation, mxfp4_experts=mxfp4_experts
    )


def build_tiny(
    *,
    seed: int = TINY_SEED,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    attn_implementation: str = "eager",
    **_: Any,
):
    """The tiny GPT-OSS from its seed (``embedded:tiny``)."""
    from transformers import GptOssForCausalLM

    config = tiny_config()
    config._attn_implementation = attn_implementation
    # Weights are drawn on the CPU in float32 from a private generator state, so that the model is
    # identical across devices and dtypes and the caller's random stream is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GptOssForCausalLM(config)
    model.generation_config.pad_token_id = PAD_TOKEN_ID
    model.generation_config.eos_token_id = [RETURN_TOKEN_ID, CALL_TOKEN_ID]
    return model.to(device=device, dtype=dtype).eval()


def build_random(
    name: str,
    *,
    big: bool,
    seed: int = TINY_SEED,
    dtype: torch.dtype,
    device: torch.device | str,
    attn_implementation: str,
    mxfp4_experts: bool = False,
):
    """gpt-oss-20b's (or with ``big`` 120b's) architecture with seeded random weights, on a GPU."""
    from transformers import GptOssForCausalLM

    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        need = "about 65 GiB of memory with mxfp4_experts" if big else "about 45 GiB of memory"
        raise ModelLoadError(
            f"{name} is the full gpt-oss-{'120b' if big else '20b'} architecture "
            f"({'117' if big else '21'} B parameters) and needs a CUDA GPU with {need}; this model would run on "
            f"{device}{'' if torch.cuda.is_available() else ' (torch sees no CUDA GPU)'}. "
            "On a CPU use embedded:tiny-base, the default."
        )
    if big and not mxfp4_experts:
        raise ModelLoadError(
            f"{name} in bf16 is 217 GiB of weights, more than any single GPU holds; load it with its experts in "
            f"MXFP4 (model.mxfp4_experts true, `%oss_finetune load --mxfp4-experts`): about 61 GiB."
        )
    if dtype == torch.float32:
        # 84 GB of fp32 weights fit no single GPU; this model exists to exercise the bf16 path.
        dtype = torch.bfloat16
    config = gpt_oss_120b_config() if big else gpt_oss_20b_config()
    config._attn_implementation = attn_implementation
    if mxfp4_experts:
        from .mxfp4 import build_random_layerwise

        # Layer by layer, so that a 16 GiB GPU never holds the 36 GiB of bf16 experts at once.
        model = build_random_layerwise(config, seed=seed, dtype=dtype, device=device)
        model.generation_config.pad_token_id = PAD_TOKEN_ID
        model.generation_config.eos_token_id = [RETURN_TOKEN_ID, CALL_TOKEN_ID]
        return model.eval()
    # Drawn on the GPU in the target dtype: a CPU fp32 copy would take 84 GB of host memory and minutes.
    with torch.random.fork_rng(devices=[device]):
        torch.manual_seed(seed)
        with torch.device(device):
            model = GptOssForCausalLM._from_config(config, dtype=dtype)
    model.generation_config.pad_token_id = PAD_TOKEN_ID
    model.generation_config.eos_token_id = [RETURN_TOKEN_ID, CALL_TOKEN_ID]
    return model.eval()


def _load_tokenizer(name_or_path: str | None):
    """The model's own tokenizer; the vendored gpt-oss tokenizer for the embedded model or a folder without one."""
    try:
        from ..core.tokenizer import load_tokenizer
    except ImportError:
        load_tokenizer = None  # type: ignore[assignment]
    vendored = str(Path(__file__).resolve().parents[1] / "assets" / "tokenizer")
    candidates = [name_or_path] if name_or_path else []
    candidates.append(EMBEDDED_TINY if load_tokenizer is not None else vendored)
    last_error: Exception | None = None
    for candidate in candidates:
        try:
            if load_tokenizer is not None:
                return load_tokenizer(candidate)
            from transformers import AutoTokenizer

            return AutoTokenizer.from_pretrained(candidate)
        except Exception as error:  # noqa: BLE001 - a folder without a tokenizer falls back to the vendored one
            last_error = error
    raise ModelLoadError(f"no tokenizer could be loaded for {name_or_path!r}: {last_error}")


def _bitsandbytes_available() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install is as good as none
        return False
    return True


def _checkpoint_quantization(name_or_path: str) -> str | None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name_or_path)
    quant = getattr(config, "quantization_config", None)
    if quant is None:
        return None
    if isinstance(quant, dict):
        return quant.get("quant_method")
    return getattr(quant, "quant_method", None)


def _looks_like_a_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def load_model(model_config: ConfigBase | dict | None = None, *, tokenizer: Any = None) -> LoadedModel:
    """Load the base model described by the ``model`` section of a fine-tune config.

    Keys (all optional): name_or_path ('embedded:tiny', a hub id or a local folder), dtype
    ('auto' | 'bfloat16' | 'float16' | 'float32'), device ('auto' | 'cpu' | 'cuda'), load_in_4bit,
    attn_implementation.
    """
    settings = _model_section(model_config)
    name = settings["name_or_path"]
    device, dtype, why = choose_device_and_dtype(settings["device"], settings["dtype"])
    attn = settings["attn_implementation"]

    if settings["load_in_4bit"]:
        if device.type != "cuda":
            raise ModelLoadError(
                "load_in_4bit needs a CUDA GPU (bitsandbytes quantizes on the GPU), and this model would run "
                "on the CPU. Set load_in_4bit to false, or run on a machine with an NVIDIA GPU."
            )
        if not _bitsandbytes_available():
            raise ModelLoadError(
                "load_in_4bit needs the bitsandbytes package, which is not installed here. "
                "Install it with `pip install 'oss-finetune[gpu]'` (or `pip install bitsandbytes`), "
                "or set load_in_4bit to false."
            )

    if sources.is_embedded(name):
        if settings["load_in_4bit"]:
            raise ModelLoadError(
                "load_in_4bit applies to hub or local checkpoints; the embedded model is small enough "
                "to load in full precision. Set load_in_4bit to false."
            )
        model = build_embedded_model(
            name,
            dtype=dtype,
            device=device,
            attn_implementation=attn,
            mxfp4_experts=bool(settings.get("mxfp4_experts")),
        )
        tok = tokenizer if tokenizer is not None else _load_tokenizer(None)
        description = _describe(name, model, device, dtype, why, parameters=True)
        quantization = None
        if settings.get("mxfp4_experts"):
            description += _keep_experts_in_mxfp4(model)
            quantization = "mxfp4-experts"
        return LoadedModel(
            model, tok, device, dtype, name, description, embedded=True, config=settings, quantization=quantization
        )

    if _looks_like_a_path(name) and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"the model folder {name} does not exist (a hub id has the form owner/name)")

    from transformers import GptOssForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn}
    quantization = _checkpoint_quantization(name)
    if quantization == "mxfp4" and settings.get("mxfp4_experts") and not settings["load_in_4bit"]:
        return _load_mxfp4_as_released(name, settings, device, dtype, attn, why, tokenizer)
    if quantization == "mxfp4":
        if settings["load_in_4bit"]:
            raise ModelLoadError(
                f"{name} is an MXFP4 checkpoint; bitsandbytes cannot re-quantize it while it loads. "
                "Use a bf16 checkpoint (for example unsloth/gpt-oss-20b-BF16) or a checkpoint already "
                "quantized with bitsandbytes (for example unsloth/gpt-oss-20b-bnb-4bit)."
            )
        from transformers import Mxfp4Config

        # LoRA trains through the base weights, so the MXFP4 experts are expanded to bf16 once at load.
        kwargs["quantization_config"] = Mxfp4Config(dequantize=True)
        kwargs["dtype"] = torch.bfloat16 if settings["dtype"] == "auto" and device.type == "cuda" else dtype
        why += "; MXFP4 weights dequantized to bf16 for training"
        quantization = "mxfp4->dequantized"
    elif quantization == "bitsandbytes" or settings["load_in_4bit"]:
        if device.type != "cuda" or not _bitsandbytes_available():
            raise ModelLoadError(
                f"{name} is quantized with bitsandbytes, which needs a CUDA GPU and the bitsandbytes package. "
                "Load a bf16 checkpoint instead, or run on a machine with an NVIDIA GPU."
            )
        if quantization is None:
            from transformers import BitsAndBytesConfig

            compute = dtype if dtype != torch.float32 else torch.bfloat16
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=compute,
                bnb_4bit_use_double_quant=True,
            )
        why += "; base weights in 4-bit NF4 (bitsandbytes)"
        quantization = "bnb-4bit"
    # With MXFP4 experts the bf16 model is staged on the host and reaches the GPU a layer at a time.
    staged = bool(settings.get("mxfp4_experts")) and device.type == "cuda" and not settings["load_in_4bit"]
    if device.type == "cuda":
        kwargs["device_map"] = {"": "cpu"} if staged else {"": device.index or 0}

    try:
        model = GptOssForCausalLM.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load {name!r} as a GPT-OSS model: {error}") from error
    if device.type != "cuda":
        model = model.to(device)
    model.eval()
    tok = tokenizer if tokenizer is not None else _load_tokenizer(name)
    description = _describe(name, model, device, model.dtype, why)
    if settings.get("mxfp4_experts"):
        description += _keep_experts_in_mxfp4(model, device if staged else None)
        quantization = (
            "mxfp4-experts" if quantization in (None, "mxfp4->dequantized") else f"{quantization}+mxfp4-experts"
        )
    return LoadedModel(model, tok, device, model.dtype, name, description, quantization=quantization, config=settings)


def load_model_on_meta(model_config: ConfigBase | dict | None = None, *, tokenizer: Any = None) -> LoadedModel:
    """The base model of the ``model`` section built on the meta device, holding no weights, with the
    checkpoint they are to be read from (``LoadedModel.weights``, a ``CheckpointSlices``).

    For ranks that shard the model (training.sharding fsdp under torchrun): each materializes only its
    own slice of every parameter and reads only those rows from the files (``sharding.load_shares``),
    so no rank ever holds the whole model. Reads bf16 or float32 safetensors folders and MXFP4
    checkpoints (their experts expanded slice by slice); the dtype is chosen as ``load_model`` chooses it.
    """
    from transformers import GenerationConfig, GptOssConfig, GptOssForCausalLM

    from .slices import CheckpointSlices

    settings = _model_section(model_config)
    name = settings["name_or_path"]
    if sources.is_embedded(name):
        raise ModelLoadError(
            f"{name} is built from a seed and has no checkpoint files to read shares from; "
            "load it with load_model (every rank builds the same model)"
        )
    fix = "set it to false, or train with training.sharding 'replicate'"
    if settings["load_in_4bit"]:
        raise ModelLoadError(f"model.load_in_4bit: sharded loading reads bf16 weights and FSDP shards them; {fix}")
    if settings.get("mxfp4_experts"):
        raise ModelLoadError(
            f"model.mxfp4_experts: sharded loading expands the experts to bf16 and FSDP shards them; {fix}"
        )
    if _looks_like_a_path(name) and not Path(name).expanduser().is_dir():
        raise ModelLoadError(f"the model folder {name} does not exist (a hub id has the form owner/name)")
    device, dtype, why = choose_device_and_dtype(settings["device"], settings["dtype"])
    folder = _checkpoint_folder(str(Path(name).expanduser()) if _looks_like_a_path(name) else name)
    try:
        weights = CheckpointSlices(folder)
        config = GptOssConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not read {name!r} as a GPT-OSS checkpoint: {error}") from error
    quantization = None
    if weights.quantization == "mxfp4":
        del config.quantization_config  # the experts are expanded as they are read
        if settings["dtype"] == "auto" and device.type == "cuda":
            dtype = torch.bfloat16
        why += "; MXFP4 experts expanded to bf16 slice by slice as each rank reads its share"
        quantization = "mxfp4->dequantized"
    elif weights.quantization is not None:
        raise ModelLoadError(
            f"{name} is quantized with {weights.quantization}; sharded loading reads bf16 safetensors "
            "(or OpenAI's MXFP4 ones): use a bf16 checkpoint (for example unsloth/gpt-oss-20b-BF16), "
            "or train with training.sharding 'replicate'"
        )
    config._attn_implementation = settings["attn_implementation"]
    with torch.device("meta"):
        model = GptOssForCausalLM._from_config(config, dtype=dtype)
    try:
        model.generation_config = GenerationConfig.from_pretrained(folder)
    except OSError:
        pass
    model.eval()
    tok = tokenizer if tokenizer is not None else _load_tokenizer(name)
    files = len(weights.files)
    description = _describe(name, model, device, dtype, why) + (
        f"; built on the meta device, no weight read yet: each rank reads its share from {files} "
        f"safetensors file{'' if files == 1 else 's'}"
    )
    return LoadedModel(
        model, tok, device, dtype, name, description, quantization=quantization, config=settings, weights=weights
    )


# What _checkpoint_folder fetches from the hub: the top-level transformers files only. OpenAI's repos
# also hold original/ and metal/ copies of the weights, which would double or triple the download.
CHECKPOINT_FILES = ("config.json", "generation_config.json", "model*.safetensors", "model.safetensors.index.json")


def _checkpoint_folder(name: str) -> Path:
    """A local folder as is; a hub id downloaded (CHECKPOINT_FILES only)."""
    if Path(name).is_dir():
        return Path(name)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, allow_patterns=list(CHECKPOINT_FILES)))
    except Exception as error:  # noqa: BLE001 - offline, unknown id, no access: one message for all
        raise ModelLoadError(f"could not fetch {name!r} from the Hugging Face hub: {error}") from error


def _load_mxfp4_as_released(
    name: str, settings: dict, device: torch.device, dtype: torch.dtype, attn: str, why: str, tokenizer: Any
) -> LoadedModel:
    """An MXFP4 checkpoint with mxfp4_experts: its experts are read as they are stored, never in bf16."""
    from .mxfp4 import expert_bytes, load_checkpoint

    if dtype == torch.float32 and device.type == "cuda":
        dtype = torch.bfloat16
    try:
        model = load_checkpoint(_checkpoint_folder(name), dtype=dtype, device=device, attn_implementation=attn)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load {name!r} as a GPT-OSS MXFP4 checkpoint: {error}") from error
    tok = tokenizer if tokenizer is not None else _load_tokenizer(name)
    description = (
        _describe(name, model, device, dtype, why) + f"; experts kept in MXFP4 as released, "
        f"{expert_bytes(model) / 2**30:.1f} GiB (read directly, never in bf16; LoRA on the attention)"
    )
    return LoadedModel(model, tok, device, dtype, name, description, quantization="mxfp4-experts", config=settings)


def _keep_experts_in_mxfp4(model, device: torch.device | None = None) -> str:
    """Quantize what is still bf16; with ``device``, a model staged on the host goes there layer by layer."""
    from .mxfp4 import BLOCK, expert_bytes, quantize_experts

    quantize_experts(model, device=device)
    if device is not None:
        model.to(device)
    packed = expert_bytes(model)
    bf16 = packed * 16 / (4 + 8 / BLOCK)  # 4.25 bits a weight against 16
    return (
        f"; experts kept in MXFP4, {packed / 2**30:.1f} GiB instead of {bf16 / 2**30:.1f} "
        f"(dequantized a layer at a time; LoRA on the attention)"
    )


def _describe(name: str, model, device: torch.device, dtype: torch.dtype, why: str, *, parameters: bool = False) -> str:
    """The line `load` prints: the model's shape, where it is and why."""
    config = model.config
    counted = f"{_count(model):,} parameters, " if parameters else ""
    return (
        f"{name}: {type(model).__name__}, {config.num_hidden_layers} layers, {config.num_local_experts} experts, "
        f"vocab {config.vocab_size:,}, {counted}on {device} in {_dtype_name(dtype)} ({why})"
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _count(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# The expert weights are 3-D parameters (experts x in x out), not nn.Linear modules, so peft reaches
# them through target_parameters rather than target_modules.
EXPERT_PARAMETERS = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def lora_config_for(lora_config: ConfigBase | dict | None = None):
    """The peft LoraConfig for the ``lora`` section of a fine-tune config."""
    from peft import LoraConfig

    settings = _lora_section(lora_config)
    return LoraConfig(
        r=settings["r"],
        lora_alpha=settings["alpha"],
        lora_dropout=settings["dropout"],
        target_modules=list(settings["target_modules"]),
        target_parameters=list(EXPERT_PARAMETERS) if settings["target_experts"] else None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model, lora_config: ConfigBase | dict | None = None, *, seed: int | None = None):
    """Wrap ``model`` with a fresh LoRA adapter; returns the peft model (base weights frozen).

    ``seed`` fixes the adapter's initial weights without disturbing the caller's random stream.
    """
    from peft import get_peft_model

    from .mxfp4 import Mxfp4Experts

    config = lora_config_for(lora_config)
    if config.target_parameters and any(isinstance(m, Mxfp4Experts) for m in model.modules()):
        raise ValueError(
            "lora.target_experts: the experts of this model are kept in MXFP4 (model.mxfp4_experts) "
            "and take no adapter; set target_experts to false, or load without mxfp4_experts"
        )
    with _host_stand_ins(model), peft_quietly():
        if seed is None:
            peft_model = get_peft_model(model, config)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                peft_model = get_peft_model(model, config)
    return peft_model


@contextlib.contextmanager
def _host_stand_ins(model):
    """A base on the meta device (load_model_on_meta) gets its adapter drawn on the host, exactly as over
    loaded weights: peft puts a new adapter where its base weight is, so on the meta device the drawn
    values would be lost. While it builds the adapter, each meta parameter is stood in for by a host
    tensor of its shape and dtype that holds one element."""
    swapped = []
    stand_ins: dict[int, torch.nn.Parameter] = {}
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or not param.is_meta:
                continue
            if id(param) not in stand_ins:  # tied weights share one stand-in, as they share one parameter
                one = torch.zeros((), dtype=param.dtype).expand(param.shape)
                stand_ins[id(param)] = torch.nn.Parameter(one, requires_grad=param.requires_grad)
            module._parameters[name] = stand_ins[id(param)]
            swapped.append((module, name, param))
    try:
        yield
    finally:
        for module, name, param in swapped:
            stand_in = module._parameters[name]
            param.requires_grad_(stand_in.requires_grad if stand_in is not None else param.requires_grad)
            module._parameters[name] = param


def trainable_parameters(model) -> int:
    return _count(model, trainable_only=True)


def all_parameters(model) -> int:
    return _count(model)


def describe_lora(model) -> str:
    trainable, total = trainable_parameters(model), all_parameters(model)
    return f"LoRA: {trainable:,} trainable parameters of {total:,} ({100 * trainable / max(total, 1):.4f}%)"


def unwrap(model):
    """The transformers model under a peft wrapper (LoRA layers stay injected in it)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def model_device(model) -> torch.device:
    return next(model.parameters()).device
