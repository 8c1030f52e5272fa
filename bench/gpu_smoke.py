"""GPU smoke run: the gpt-oss-20b architecture with random bf16 weights, trained by our own loop.

    python bench/gpu_smoke.py                      # r=8 on q/k/v/o, batch 1 x 16, seq 1024, 2 steps
    python bench/gpu_smoke.py --experts            # LoRA on the MoE experts too
    python bench/gpu_smoke.py --json out.json      # also write the figures as JSON

The weights are drawn on the GPU in bf16 (never materialised in fp32 on the CPU), so the compute and
the memory are the real model's; the loss is not meaningful. Without CUDA it says why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import oss_finetune.embedded  # noqa: E402,F401 - registers the embedded models this bench loads by name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--accumulation", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--experts", action="store_true", help="also put adapters on the expert weights")
    parser.add_argument("--no-checkpointing", action="store_true", help="turn gradient checkpointing off")
    parser.add_argument("--attn", default="eager")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            f"SKIP gpu_smoke: no CUDA GPU visible to torch {torch.__version__} "
            f"(CUDA build: {torch.version.cuda or 'none'}); this run needs an NVIDIA GPU with ~50 GiB."
        )
        return 0

    import transformers
    from transformers import GptOssForCausalLM

    from oss_finetune.modeling.model import apply_lora, gpt_oss_20b_config, trainable_parameters
    from oss_finetune.training.trainer import Trainer, TrainingExample

    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    name = torch.cuda.get_device_name(device)
    print(f"device: {name}; torch {torch.__version__}; transformers {transformers.__version__}", flush=True)

    started = time.perf_counter()
    config = gpt_oss_20b_config()
    config._attn_implementation = args.attn
    torch.manual_seed(0)
    with torch.device(device):
        model = GptOssForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.eval()
    torch.cuda.synchronize()
    build_seconds = time.perf_counter() - started
    weights_gib = torch.cuda.memory_allocated(device) / 2**30
    print(
        f"built gpt-oss-20b architecture on {device} in bf16 in {build_seconds:.1f} s, "
        f"{sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters, {weights_gib:.1f} GiB; "
        f"experts implementation: {getattr(model.config, '_experts_implementation', '?')}",
        flush=True,
    )

    lora = {"r": args.rank, "alpha": 2 * args.rank, "target_experts": args.experts}
    model = apply_lora(model, lora, seed=0)
    trainable = trainable_parameters(model)
    print(f"LoRA {lora}: {trainable:,} trainable parameters", flush=True)

    # Random tokens from the named part of the vocabulary; the loss mask covers the last 3/4 of
    # each sequence, like an assistant answer after a prompt.
    generator = torch.Generator().manual_seed(0)
    samples = args.steps * args.batch * args.accumulation
    keep = args.seq // 4
    examples = [
        TrainingExample(
            torch.randint(0, 199_998, (args.seq,), generator=generator).tolist(),
            [False] * keep + [True] * (args.seq - keep),
        )
        for _ in range(samples)
    ]
    output_dir = tempfile.mkdtemp(prefix="gpu-smoke-")
    settings = {
        "max_steps": args.steps,
        "batch_size": args.batch,
        "gradient_accumulation_steps": args.accumulation,
        "learning_rate": 2e-4,
        "warmup_steps": 0,
        "optimizer": "adamw_torch",
        "gradient_checkpointing": not args.no_checkpointing,
        "save_steps": 10_000,
        "output_dir": output_dir,
    }
    trainer = Trainer(model, examples, settings, handle_sigint=False)

    def show(m):
        print(
            f"step {m.step}: loss {m.loss:.4f}  grad_norm {m.grad_norm:.4f}  lr {m.lr:.2e}  "
            f"{m.tokens_per_second:,.0f} tokens/s  peak {m.gpu_memory_gib:.2f} GiB  "
            f"elapsed {m.elapsed_seconds:.1f} s",
            flush=True,
        )

    trainer.on_step(show)
    torch.cuda.reset_peak_memory_stats(device)
    result = trainer.train()
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    tokens_per_step = args.batch * args.accumulation * args.seq
    step_seconds = [tokens_per_step / m.tokens_per_second for m in result.metrics]
    figures = {
        "date": datetime.now(timezone.utc).date().isoformat(),
        "device": name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lora": lora,
        "trainable_parameters": trainable,
        "seq": args.seq,
        "batch": args.batch,
        "accumulation": args.accumulation,
        "gradient_checkpointing": not args.no_checkpointing,
        "attn": args.attn,
        "status": result.status,
        "losses": [m.loss for m in result.metrics],
        "step_seconds": step_seconds,
        "tokens_per_second": [m.tokens_per_second for m in result.metrics],
        "peak_memory_gib": peak,
        "weights_gib": weights_gib,
        "build_seconds": build_seconds,
    }
    print("RESULT " + json.dumps(figures), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    sys.exit(main())
