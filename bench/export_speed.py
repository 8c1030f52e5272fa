"""Exports of a gpt-oss fine-tune: size, time to write and time to verify, format by format.

    python bench/export_speed.py                          # gpt-oss-20b architecture on the GPU, every format
    python bench/export_speed.py --formats mxfp4,gguf --json out.json

The model is embedded:gpt-oss-20b-random (the real architecture, seeded random bf16 weights) with a LoRA
adapter on attention and the experts whose factors are all non-zero, so every merged weight differs from
the base. Each format goes through ``modeling.export.export`` exactly as ``%oss_finetune save --format F``
runs it: written, read back by its consumer and compared with the live model on the probe prompts. For
``mxfp4`` the figure that matters beside the size is the logit error of the rounding: the largest change
of a probe logit between the live (bf16, unmerged) model and the same model with its merged experts
rounded to MXFP4. Each folder is removed after its row, so the disk holds one export at a time.

Without CUDA it says why and exits 0 (the CPU tests write and check every format on the embedded models).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

FORMATS = ("peft", "vllm", "merged", "mxfp4", "gguf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["20b", "120b"], default="20b")
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--model", default=None, help="another model instead (embedded:tiny-base runs on the CPU)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--folder", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)

    import torch

    name = args.model or f"embedded:gpt-oss-{args.arch}-random"
    if not torch.cuda.is_available() and args.model is None:
        print("export_speed: no CUDA GPU here; the CPU tests cover every format on the embedded models")
        return 0

    import oss_finetune.embedded  # noqa: F401 - registers the embedded models loaded by name below
    from oss_finetune.modeling import export as exports
    from oss_finetune.modeling.model import apply_lora, load_model

    started = time.perf_counter()
    loaded = load_model({"name_or_path": name})
    model = apply_lora(loaded.model, {"r": args.rank, "alpha": 2 * args.rank, "target_experts": True}, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:  # peft starts B at zero; a trained adapter has none
                param.copy_(torch.randn(param.shape, generator=generator).to(param) * 0.01)
    built = time.perf_counter() - started
    figures: dict = {
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "model": name,
        "lora": f"r {args.rank}, attention and experts",
        "model_built_seconds": round(built, 1),
        "formats": [],
    }
    print(f"{name} with LoRA r {args.rank} on attention and experts, built in {built:.1f} s", flush=True)
    root = Path(args.folder or tempfile.mkdtemp(prefix="export-speed-"))
    for fmt in [f for f in args.formats.split(",") if f]:
        path = root / fmt
        times: dict[str, float] = {}

        def stage(step: str, line: str, times=times) -> None:
            times[step] = time.perf_counter()

        started = time.perf_counter()
        try:
            result = exports.export(model, loaded.tokenizer, fmt, path, base_model=name, on_progress=stage)
        except Exception as error:  # a failed format is a figure too; the others still run
            row = {"format": fmt, "error": f"{type(error).__name__}: {error}"[:2000]}
            print(json.dumps(row), flush=True)
            figures["formats"].append(row)
            shutil.rmtree(path, ignore_errors=True)
            continue
        total = time.perf_counter() - started
        verification = result.verification
        row = {
            "format": fmt,
            "bytes": result.bytes,
            "size": result.size,
            "write_seconds": round(result.seconds, 1),
            "verify_seconds": round(total - (times.get("checking", started) - started), 1),
            "total_seconds": round(total, 1),
            "line": result.line(),
        }
        if verification is not None:
            row["max_logit_diff_vs_consumer"] = verification.max_logit_diff
            row["logit_change_from_rounding"] = verification.quantization_diff
        print(json.dumps(row), flush=True)
        figures["formats"].append(row)
        shutil.rmtree(path, ignore_errors=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 1 if any("error" in r for r in figures["formats"]) else 0


if __name__ == "__main__":
    sys.exit(main())
