"""Small GPU building blocks shared by the fast engine and the MXFP4 experts.

Kept apart from both so that neither has to import the other: ``engine`` and ``mxfp4`` sit on this
module, and ``experts`` (the grouped expert forward) sits between them.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F


def wide(t: torch.Tensor) -> torch.Tensor:
    """Half precision computes in float32; float32 and float64 (the tests) stay as they are."""
    return t.float() if t.dtype in (torch.bfloat16, torch.float16) else t


def grouped_mm(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` sorted by expert times that expert's (in, out) matrix."""
    if x.is_cuda and x.dtype == torch.bfloat16:
        fn = getattr(F, "grouped_mm", None) or torch._grouped_mm
        return fn(x, weight, offs=offsets)
    out = []
    start = 0
    for expert, end in enumerate(offsets.tolist()):
        out.append(x[start:end] @ weight[expert])
        start = end
    return torch.cat(out) if out else x.new_zeros(0, weight.shape[-1])


_COMPILED: dict = {}
# What compiles them. The tests trace every fused step with "eager" (torch.compile's tracing alone) on
# the CPU, so that a step that would break the graph fails there and not first on a GPU.
COMPILE_BACKEND = "inductor"


def fuses_kernels(on_cuda: bool) -> bool:
    """Whether the engine compiles its elementwise steps: on CUDA unless OSS_FINETUNE_COMPILE=0.
    The memory planner asks too, since fused steps keep fewer tensors for the backward."""
    return on_cuda and os.environ.get("OSS_FINETUNE_COMPILE", "1") != "0"


def fused(fn, tensor: torch.Tensor):
    """``fn`` compiled into fused GPU kernels on CUDA (elementwise passes over (tokens x 4) x 5,760
    activations are memory-bound; fused, each tensor is read once); as written elsewhere."""
    if not fuses_kernels(tensor.is_cuda):
        return fn
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True, fullgraph=True, backend=COMPILE_BACKEND)
    return _COMPILED[fn]
