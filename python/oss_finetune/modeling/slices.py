"""A checkpoint folder's weights read a slice of rows at a time, for ranks that each hold only a share.

``safe_open(...).get_slice`` reads the bytes of the rows asked for and nothing else, so a rank that
reads its rows of every weight never holds more than its share plus the slice being copied. Weights
are the bf16 (or float32) tensors of a safetensors folder, as ``save_pretrained`` writes them and as
the dequantized gpt-oss checkpoints hold them; the experts of OpenAI's MXFP4 releases
(``{proj}_blocks`` and ``{proj}_scales``) are expanded slice by slice, which is exact: an MXFP4 value
is a 2-bit mantissa times a power of two.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

MXFP4_PARTS = ("_blocks", "_scales")


class CheckpointSlices:
    """Where each weight of ``folder`` is stored, and its rows read on request."""

    def __init__(self, folder: str | Path):
        from safetensors import safe_open

        self.folder = Path(folder)
        self.files = sorted(self.folder.glob("*.safetensors"))
        if not self.files:
            raise FileNotFoundError(f"{self.folder} has no .safetensors files")
        self.stored: dict[str, Path] = {}
        for file in self.files:
            with safe_open(str(file), framework="pt") as reader:
                for key in reader.keys():
                    self.stored[key] = file
        config = self.folder / "config.json"
        values = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
        self.quantization: str | None = (values.get("quantization_config") or {}).get("quant_method")
        self.largest_read = 0  # bytes of the largest single slice read, for the memory check

    def has(self, name: str) -> bool:
        return name in self.stored or all(name + part in self.stored for part in MXFP4_PARTS)

    def shape(self, name: str) -> tuple[int, ...]:
        """The weight's shape as the model holds it (an MXFP4 stack's as (experts, in, out))."""
        if name in self.stored:
            return self._shape(name)
        experts, rows, groups, half_block = self._shape(name + "_blocks")
        return (experts, groups * half_block * 2, rows)

    def read(self, name: str, start: int, stop: int, dtype: torch.dtype) -> torch.Tensor:
        """Rows ``start:stop`` of the first dimension of weight ``name``, in ``dtype``, on the host."""
        if name in self.stored:
            rows = self._rows(name, start, stop).to(dtype)
        else:
            from .mxfp4 import dequantize

            blocks = self._rows(name + "_blocks", start, stop)
            scales = self._rows(name + "_scales", start, stop)
            packed = blocks.reshape(*blocks.shape[:2], -1)  # (experts, out, in/2): Mxfp4Experts' layout
            rows = dequantize(packed, scales, torch.bfloat16).transpose(1, 2).to(dtype)
        self.largest_read = max(self.largest_read, rows.numel() * rows.element_size())
        return rows

    # A handle per read: the header is small, and nothing stays mapped between weights.
    def _shape(self, key: str) -> tuple[int, ...]:
        from safetensors import safe_open

        with safe_open(str(self.stored[key]), framework="pt") as reader:
            return tuple(reader.get_slice(key).get_shape())

    def _rows(self, key: str, start: int, stop: int) -> torch.Tensor:
        from safetensors import safe_open

        with safe_open(str(self.stored[key]), framework="pt") as reader:
            return reader.get_slice(key)[start:stop]
