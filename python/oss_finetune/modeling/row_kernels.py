"""A few rows, each times its own expert's matrix, reading only the experts chosen: what a decoded
token's experts need.

The grouped GEMM tiles rows by 64 or more, so for one token's four (token, expert) rows most of each
tile is empty and the experts are read at about half the bandwidth; an MXFP4 stack had to be
dequantized into a bf16 copy first (written, then read again). These Triton kernels read each chosen
expert's weights once, straight from where they lie (bf16, or MXFP4 codes and scales decoded in
registers), and keep the sums in float32.

They run on CUDA. A process started with ``TRITON_INTERPRET=1`` runs the same kernels on the CPU
(slowly): that is how the tests check them against the plain products where there is no GPU.
"""

import logging
import os

import torch

log = logging.getLogger(__name__)
_FAILED: list[str] = []  # why the kernels failed to build or run here, once; then they are not used


def available(x: torch.Tensor, *, dense: bool = False) -> bool:
    """Whether the kernels can run on ``x``: on CUDA with Triton, unless OSS_FINETUNE_ROW_KERNELS=0 or
    they failed here before (then the products go the grouped way, with one warning). The bf16 kernel
    (``dense``) only when OSS_FINETUNE_ROW_KERNELS=all: untuned, it took 4.6 ms of a 20b decode step on an
    H100 where the grouped GEMM takes 2.5 ms; the MXFP4 one took 5.0 ms where dequantizing took 25."""
    switch = os.environ.get("OSS_FINETUNE_ROW_KERNELS", "1")
    if switch == "0" or (dense and switch != "all") or _FAILED:
        return False
    if not (x.is_cuda or os.environ.get("TRITON_INTERPRET") == "1"):
        return False
    return triton is not None


try:
    import triton  # type: ignore[import-untyped]
    import triton.language as tl  # type: ignore[import-untyped]
except ImportError:  # the kernels need Triton; available() says no without it
    triton = None


if triton is not None:

    @triton.jit
    def _dense_rows(x_ptr, w_ptr, ids_ptr, out_ptr, K, N, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr):
        # out[r, n] = sum_k x[r, k] * w[ids[r], k, n]; w is (experts, K, N), N contiguous.
        row = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        expert = tl.load(ids_ptr + row).to(tl.int64)
        base = w_ptr + expert * K * N
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for start in range(0, K, BLOCK_K):
            ks = start + tl.arange(0, BLOCK_K)
            xs = tl.load(x_ptr + row * K + ks, mask=ks < K, other=0.0).to(tl.float32)
            tile = tl.load(
                base + ks[:, None] * N + cols[None, :], mask=(ks[:, None] < K) & (cols[None, :] < N), other=0.0
            )
            acc += tl.sum(tile.to(tl.float32) * xs[:, None], axis=0)
        tl.store(out_ptr + row * N + cols, acc.to(out_ptr.dtype.element_ty), mask=cols < N)

    @triton.jit
    def _mxfp4_rows(
        x_ptr, blocks_ptr, scales_ptr, ids_ptr, out_ptr, K, N, BLOCK_BYTES: tl.constexpr, BLOCK_N: tl.constexpr
    ):
        # out[r, n] = sum_k x[r, k] * value(ids[r], n, k); blocks is (experts, N, K / 2), two E2M1 codes
        # a byte (the low nibble first), scales (experts, N, K / 32) biased powers of two.
        row = tl.program_id(0)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        expert = tl.load(ids_ptr + row).to(tl.int64)
        half = K // 2
        block_base = blocks_ptr + expert * N * half
        scale_base = scales_ptr + expert * N * (K // 32)
        acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for start in range(0, half, BLOCK_BYTES):
            byte = start + tl.arange(0, BLOCK_BYTES)
            inside = (cols[:, None] < N) & (byte[None, :] < half)
            packed = tl.load(block_base + cols[:, None] * half + byte[None, :], mask=inside, other=0).to(tl.int32)
            scale = tl.load(scale_base + cols[:, None] * (K // 32) + byte[None, :] // 16, mask=inside, other=127)
            factor = tl.exp2(scale.to(tl.float32) - 127.0)
            x_low = tl.load(x_ptr + row * K + 2 * byte, mask=byte < half, other=0.0).to(tl.float32)
            x_high = tl.load(x_ptr + row * K + 2 * byte + 1, mask=byte < half, other=0.0).to(tl.float32)
            for shift in tl.static_range(2):
                code = (packed >> (4 * shift)) & 15
                exponent = (code >> 1) & 3
                mantissa = (code & 1).to(tl.float32)
                magnitude = tl.where(
                    exponent == 0, mantissa * 0.5, tl.exp2((exponent - 1).to(tl.float32)) * (1.0 + mantissa * 0.5)
                )
                value = tl.where(code >= 8, -magnitude, magnitude) * factor
                xs = x_low if shift == 0 else x_high
                acc += tl.sum(value * xs[None, :], axis=1)
        tl.store(out_ptr + row * N + cols, acc.to(out_ptr.dtype.element_ty), mask=cols < N)


def dense_rows(x: torch.Tensor, weight: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
    """Row r of ``x`` (rows, K) times ``weight[expert_ids[r]]`` of a (experts, K, N) stack."""
    rows, k = x.shape
    n = weight.shape[-1]
    out = x.new_empty(rows, n)
    _dense_rows[(rows, triton.cdiv(n, 64))](
        x.contiguous(), weight.contiguous(), expert_ids.contiguous(), out, k, n, BLOCK_K=64, BLOCK_N=64
    )
    return out


def mxfp4_rows(x: torch.Tensor, blocks: torch.Tensor, scales: torch.Tensor, expert_ids: torch.Tensor) -> torch.Tensor:
    """Row r of ``x`` (rows, K) times expert ``expert_ids[r]``'s (N, K) matrix, kept as MXFP4 codes
    ``blocks`` (experts, N, K / 2) and ``scales`` (experts, N, K / 32)."""
    rows, k = x.shape
    n = blocks.shape[1]
    if k % 32:
        raise ValueError(f"an MXFP4 row product needs a width divisible by 32, not {k}")
    out = x.new_empty(rows, n)
    _mxfp4_rows[(rows, triton.cdiv(n, 32))](
        x.contiguous(),
        blocks.contiguous(),
        scales.contiguous(),
        expert_ids.contiguous(),
        out,
        k,
        n,
        BLOCK_BYTES=64,
        BLOCK_N=32,
    )
    return out


def try_rows(kernel, *args) -> torch.Tensor | None:
    """``kernel(*args)``, or None after a warning if it cannot build or run on this machine (a Triton or
    driver it does not support), so that generation goes on the grouped way rather than stopping."""
    try:
        return kernel(*args)
    except ValueError:
        raise
    except Exception as error:  # Triton's compile and launch errors have no common base class
        _FAILED.append(str(error))
        log.warning("generation without the row kernels: they failed here (%s)", error)
        return None
