"""Where every ``auto`` setting is decided: the weight dtype, the training engine, the optimizer and the
pack size. The memory planner (before anything loads) and the model loader and trainer (when they
run) ask these same functions, so the plan describes the run that happens.

Pure decisions over the facts they are given (a GPU or not, bf16 support, whether bitsandbytes
works, whether the fast engine supports the model): no torch here, so the planner stays cheap.
"""

from __future__ import annotations


def weight_dtype(wanted: str, *, on_gpu: bool, bf16_supported: bool = True) -> tuple[str, str]:
    """The dtype name and the reason shown to the person."""
    if wanted != "auto":
        return wanted, f"{wanted}: asked for"
    if on_gpu and bf16_supported:
        return "bfloat16", "bfloat16: the GPU supports it and GPT-OSS was trained in it"
    if on_gpu:
        # float16 overflows in GPT-OSS' activations; only full precision is safe without bf16.
        return "float32", "float32: this GPU lacks bfloat16 and float16 overflows in GPT-OSS"
    return "float32", "float32: CPUs compute bfloat16 slowly and less exactly"


def engine(wanted: str, *, on_gpu: bool, supported: bool = True) -> str:
    """'fast' for a GPT-OSS model, on a GPU or the CPU, else 'transformers'; a stated choice stays.
    On a 2-core CPU the fast engine trains the tutorial's model 1.7 times as fast, to the same losses."""
    if wanted == "auto":
        return "fast" if supported else "transformers"
    return wanted


def optimizer(wanted: str, *, on_gpu: bool, bitsandbytes: bool) -> str:
    """'adamw_8bit' where bitsandbytes works on a GPU, else 'adamw_torch'; a stated choice stays."""
    if wanted == "auto":
        return "adamw_8bit" if on_gpu and bitsandbytes else "adamw_torch"
    return wanted


def pack_tokens(chosen: int | None, *, gradient_checkpointing: bool, expert_lora: bool) -> int:
    """Tokens per packed micro-batch of the fast engine when the config leaves it open: large enough
    that the expert weights are read for thousands of tokens at once, small enough that gpt-oss-20b's
    peak stays under the Hugging Face stack's (measured on an H100, bench/RESULTS.md). LoRA on the
    experts adds the low-rank activations of every routed token, so it packs fewer: at 8,192 its peak
    was level with the baseline's (43.38 against 43.33 GiB), at 6,144 it is below (42.73), for 10% less
    speed."""
    if chosen:
        return int(chosen)
    if not gradient_checkpointing:
        return 4_096
    return 6_144 if expert_lora else 16_384
