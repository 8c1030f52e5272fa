"""What this kernel runs on: GPU, memory and library versions, as the tutorial's first check."""

from __future__ import annotations

import html
import os
import platform
from importlib import metadata

LIBRARIES = ("torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes", "oss-finetune")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages * size / 2**30


def report() -> dict:
    """A plain dict: python, cpus, memory_gib, gpus (name, memory_gib, bf16), libraries, advice."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append(
                {
                    "name": props.name,
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": bool(torch.cuda.is_bf16_supported()),
                }
            )
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "cpus": os.cpu_count(),
        "memory_gib": round(_memory_gib() or 0, 1) or None,
        "gpus": gpus,
        "libraries": {name: _version(name) for name in LIBRARIES},
    }
    info["advice"] = advice(info)
    return info


def advice(info: dict) -> str:
    """One line on what this machine can train, by GPU memory (LoRA in bf16, the reference settings)."""
    if not info["gpus"]:
        return (
            "No CUDA GPU: the tutorial runs on the embedded tiny GPT-OSS on the CPU. "
            "gpt-oss-20b needs a GPU with about 45 GiB (bf16) or 16 GiB (experts in MXFP4)."
        )
    best = max(g["memory_gib"] for g in info["gpus"])
    # Data parallel needs a whole replica on each GPU, so only GPUs that hold one count.
    able = sum(1 for g in info["gpus"] if g["memory_gib"] >= min(best, 45) and g["memory_gib"] >= 15)
    several = (
        f" With {able} such GPUs, `%oss_finetune train --gpus {able}` trains on all of them at once."
        if able > 1
        else ""
    )
    if best >= 45:
        return f"{best:.0f} GiB of GPU memory: gpt-oss-20b fits in bf16 with LoRA at the reference settings." + several
    if best >= 15:
        # bitsandbytes' load_in_4bit quantizes linear layers only; GPT-OSS' experts are 3-D parameters.
        return (
            f"{best:.0f} GiB of GPU memory: load gpt-oss-20b with --mxfp4-experts (experts in 4-bit "
            "MXFP4, about 13 GiB of weights) and LoRA on the attention." + several
        )
    return f"{best:.0f} GiB of GPU memory is too little for gpt-oss-20b; use the embedded model or a larger GPU."


def as_text(info: dict) -> str:
    gpus = (
        ", ".join(f"{g['name']} ({g['memory_gib']} GiB{', bf16' if g['bf16'] else ''})" for g in info["gpus"]) or "none"
    )
    libs = ", ".join(f"{k} {v}" for k, v in info["libraries"].items() if v)
    missing = ", ".join(k for k, v in info["libraries"].items() if not v)
    lines = [
        f"Python {info['python']} on {info['platform']}, {info['cpus']} CPUs, {info['memory_gib']} GiB RAM",
        f"GPU: {gpus}",
        f"libraries: {libs}" + (f" (not installed: {missing})" if missing else ""),
        info["advice"],
    ]
    return "\n".join(lines)


def as_html(info: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(line.split(':', 1)[0])}</td><td>{html.escape(line.split(':', 1)[-1])}</td></tr>"
        for line in as_text(info).splitlines()[1:3]
    )
    return (
        f'<div style="font-family:sans-serif;font-size:13px"><div>{html.escape(as_text(info).splitlines()[0])}</div>'
        f"<table>{rows}</table><div><b>{html.escape(info['advice'])}</b></div></div>"
    )


def show() -> dict:
    """Display the report in the current cell and return it."""
    from IPython.display import display

    info = report()
    display({"text/plain": as_text(info), "text/html": as_html(info)}, raw=True)
    return info
