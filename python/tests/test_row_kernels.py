"""The row kernels (oss_finetune.modeling.row_kernels), read as a manual: a few rows, each times its own
expert's matrix, equal the plain products, for bf16 stacks and for MXFP4 codes read in place.

Without a GPU the same Triton kernels run in Triton's interpreter, which must be switched on before
Triton is imported: those checks run in a child process started with TRITON_INTERPRET=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from oss_finetune.modeling import row_kernels
from oss_finetune.modeling.mxfp4 import dequantize, quantize

pytest.importorskip("triton")


def check_dense_rows(device: str) -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 96, 80, generator=generator).to(device)  # experts, in, out
    x = torch.randn(5, 96, generator=generator).to(device)
    ids = torch.tensor([3, 0, 3, 5, 1], device=device)
    expected = torch.stack([x[r] @ weight[e] for r, e in enumerate(ids.tolist())])
    assert torch.allclose(row_kernels.dense_rows(x, weight, ids), expected, atol=1e-4, rtol=1e-4)


def check_mxfp4_rows(device: str) -> None:
    generator = torch.Generator().manual_seed(1)
    blocks, scales = quantize(torch.randn(4, 48, 128, generator=generator))  # experts, out, in
    blocks, scales = blocks.to(device), scales.to(device)
    x = torch.randn(3, 128, generator=generator).to(device)
    ids = torch.tensor([2, 2, 0], device=device)
    weight = dequantize(blocks, scales, torch.float32)
    expected = torch.stack([weight[e] @ x[r] for r, e in enumerate(ids.tolist())])
    assert torch.allclose(row_kernels.mxfp4_rows(x, blocks, scales, ids), expected, atol=1e-4, rtol=1e-4)


def run(check: str) -> None:
    if torch.cuda.is_available():
        globals()[check]("cuda")
        return
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    code = f"import test_row_kernels as t; t.{check}('cpu'); print('checked')"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).parent, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0 and "checked" in done.stdout, done.stderr[-3000:]


def test_each_row_is_multiplied_by_its_own_expert():
    run("check_dense_rows")


def test_mxfp4_rows_equal_the_dequantized_product_without_a_bf16_copy():
    run("check_mxfp4_rows")


def test_a_width_that_is_not_whole_mxfp4_blocks_is_refused():
    blocks = torch.zeros(1, 4, 10, dtype=torch.uint8)
    scales = torch.zeros(1, 4, 1, dtype=torch.uint8)
    with pytest.raises(ValueError, match="divisible by 32"):
        row_kernels.mxfp4_rows(torch.zeros(1, 20), blocks, scales, torch.zeros(1, dtype=torch.long))


def test_the_kernels_are_off_without_a_gpu_or_when_switched_off(monkeypatch):
    assert row_kernels.available(torch.zeros(1, device="cuda" if torch.cuda.is_available() else "cpu")) == (
        torch.cuda.is_available()
    )
    here = torch.zeros(1, device="cuda" if torch.cuda.is_available() else "cpu")
    # The bf16 kernel is slower than the grouped GEMM until tuned: only on request.
    assert not row_kernels.available(here, dense=True)
    monkeypatch.setenv("OSS_FINETUNE_ROW_KERNELS", "all")
    assert row_kernels.available(here, dense=True) == torch.cuda.is_available()
    monkeypatch.setenv("OSS_FINETUNE_ROW_KERNELS", "0")
    assert not row_kernels.available(torch.zeros(1))


def test_a_kernel_that_cannot_run_here_is_dropped_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(row_kernels, "_FAILED", [])

    def broken(*_args):
        raise RuntimeError("no kernel image for this GPU")

    assert row_kernels.try_rows(broken, torch.zeros(1)) is None
    assert "no kernel image" in caplog.text
    assert not row_kernels.available(torch.zeros(1))  # the grouped products take over from here
