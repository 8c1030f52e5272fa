"""Data-parallel training: the same run on 1 GPU and on N GPUs of one host, side by side.

    python bench/data_parallel.py                       # 1 GPU, then every GPU visible
    python bench/data_parallel.py --gpus 1,2 --steps 6 --cases attention-1024

This process stands for the notebook's kernel: it loads the gpt-oss-20b architecture with seeded random
bf16 weights (embedded:gpt-oss-20b-random) on cuda:0, puts a LoRA adapter on it and trains with our
Trainer, exactly as ``%oss_finetune train --gpus N`` does: for N > 1 it starts N - 1 workers
(``parallel.start_team``), each of which builds the same model on its own GPU and reads the same
examples. Every run starts from the same adapter and trains on the same sequences in the same order,
so the losses of the first steps must agree. Step 1 includes warm-up and compilation; the speed figure
is the median of the later steps. Without two CUDA GPUs it says why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import oss_finetune.embedded  # noqa: E402,F401 - registers the embedded models this bench loads by name

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import CASES, LEARNING_RATE, make_examples  # noqa: E402

MODEL = "embedded:gpt-oss-20b-random"


def train_once(model, examples, config: dict, gpus: int):
    import torch

    from oss_finetune.training import parallel
    from oss_finetune.training.trainer import Trainer

    config = json.loads(json.dumps(config))
    config["training"]["gpus"] = gpus
    trainer = Trainer(model, examples, config["training"], run_config=config, handle_sigint=False)
    device = next(p for p in model.parameters() if p.requires_grad).device
    started = time.perf_counter()
    if gpus > 1:
        trainer.team = parallel.start_team(
            config,
            examples,
            run_id=trainer.run_id,
            run_dir=trainer.run_dir,
            device=device,
            on_progress=lambda m: print(m, flush=True),
        )
    joined = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats(device)
    try:
        result = trainer.train()
    finally:
        if trainer.team is not None:
            trainer.team.close()
    if result.status != "completed":
        raise RuntimeError(result.message)
    tokens = config["training"]["gradient_accumulation_steps"] * len(examples[0].input_ids)
    seconds = [tokens / m.tokens_per_second for m in result.metrics]
    later = seconds[1:] or seconds
    step = statistics.median(later)
    return {
        "gpus": gpus,
        "workers_ready_seconds": round(joined, 1),
        "step_seconds": round(step, 3),
        "tokens_per_second": round(tokens / step),
        "all_step_seconds": [round(s, 3) for s in seconds],
        "losses": [round(m.loss, 5) for m in result.metrics],
        "peak_gib_largest_gpu": result.metrics[-1].gpu_memory_gib,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default=None, help="comma list of GPU counts (default: 1 and all visible)")
    parser.add_argument("--cases", default="attention-1024,experts-1024")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--json", default=os.path.join(os.environ["OUT"], "data_parallel.json") if os.environ.get("OUT") else None
    )
    args = parser.parse_args(argv)

    import torch

    count = torch.cuda.device_count()
    if count < 2:
        print(f"SKIP data_parallel: {count} CUDA GPU(s) visible to torch {torch.__version__}; it needs two or more.")
        return 0
    counts = [int(c) for c in args.gpus.split(",")] if args.gpus else [1, count]

    from oss_finetune.modeling.model import apply_lora, load_model

    print(f"device: {count} x {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    base = load_model({"name_or_path": MODEL}).model
    print(f"model built in {time.perf_counter() - started:.1f} s", flush=True)

    results = []
    model = None
    for name in [c for c in args.cases.split(",") if c]:
        case = CASES[name]
        if model is not None:
            base = model.unload()
        lora = {"r": 8, "alpha": 16, "target_experts": case["experts"]}
        model = apply_lora(base, lora, seed=0)
        start_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        examples = make_examples(case["seq"], case["per_step"] * args.steps, seed=1)
        config = {
            "model": {"name_or_path": MODEL},
            "lora": lora,
            "training": {
                "max_steps": args.steps,
                "batch_size": 1,
                "gradient_accumulation_steps": case["per_step"],
                "learning_rate": LEARNING_RATE,
                "warmup_steps": 0,
                "weight_decay": 0.0,
                "lr_scheduler": "constant",
                "optimizer": "adamw_torch",
                "gradient_checkpointing": True,
                "engine": "fast",
                "seed": 0,
                "logging_steps": 1,
                "save_steps": 10_000,
                "output_dir": tempfile.mkdtemp(prefix="data-parallel-"),
            },
        }
        for gpus in counts:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in start_state:
                        p.copy_(start_state[n])
            row = {"case": name, **train_once(model, examples, config, gpus)}
            print(json.dumps(row), flush=True)
            results.append(row)
        one = next(r for r in results if r["case"] == name and r["gpus"] == counts[0])
        for row in results:
            if row["case"] == name and row is not one:
                row["speedup"] = round(row["tokens_per_second"] / one["tokens_per_second"], 2)
                row["first_loss_difference"] = abs(row["losses"][0] - one["losses"][0]) / one["losses"][0]
                print(
                    f"{name}: {row['gpus']} GPUs {row['tokens_per_second']:,} tokens/s = {row['speedup']} x "
                    f"{counts[0]} GPU ({one['tokens_per_second']:,}); first loss differs by "
                    f"{row['first_loss_difference']:.2e} (relative)",
                    flush=True,
                )

    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "device": f"{count} x {torch.cuda.get_device_name(0)}",
                    "torch": torch.__version__,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
