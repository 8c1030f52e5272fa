"""Data-parallel training: the same run on 1 GPU and on N GPUs of one host, side by side, each launched
by torchrun as ``%oss_finetune train --gpus N`` launches it.

    python bench/data_parallel.py                       # 1 GPU, then every GPU visible
    python bench/data_parallel.py --gpus 1,2 --steps 6 --cases attention-1024
    python bench/data_parallel.py --gpus 1 --in-process   # one GPU: torchrun's one rank against the kernel's way

For each case and GPU count this process starts ``python -m torch.distributed.run --nproc-per-node N``
on this very file; each rank builds the gpt-oss-20b architecture with seeded random bf16 weights
(embedded:gpt-oss-20b-random) on its GPU, puts the same seeded LoRA adapter on it and trains with our
Trainer, the ranks summing every step as under ``python -m oss_finetune train``. Every run trains on the
same sequences in the same order, so the losses of the first steps must agree. Step 1 includes warm-up
and compilation; the speed figure is the median of the later steps. ``--in-process`` also trains each
case in this very process first, as the notebook's kernel does, so torchrun's one rank can be held against
it. Without two CUDA GPUs (one is enough with ``--in-process``) it says why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "embedded:gpt-oss-20b-random"


def training_config(case: dict, steps: int, output_dir: str) -> dict:
    return {
        "model": {"name_or_path": MODEL},
        "lora": {"r": 8, "alpha": 16, "target_experts": case["experts"]},
        "training": {
            "max_steps": steps,
            "batch_size": 1,
            "gradient_accumulation_steps": case["per_step"],
            "learning_rate": 2e-4,
            "warmup_steps": 0,
            "weight_decay": 0.0,
            "lr_scheduler": "constant",
            "optimizer": "adamw_torch",
            "gradient_checkpointing": True,
            "engine": "fast",
            "seed": 0,
            "logging_steps": 1,
            "save_steps": 10_000,
            "output_dir": output_dir,
        },
    }


def one_rank(spec_path: str) -> int:
    """What each rank torchrun starts does: build, train, and (rank 0) write the figures."""
    import torch
    from train_throughput import CASES, make_examples

    import oss_finetune.embedded  # noqa: F401 - registers the embedded models this bench loads by name
    from oss_finetune.modeling.model import apply_lora, load_model
    from oss_finetune.training.distributed import RanksTeam
    from oss_finetune.training.trainer import Trainer

    spec = json.loads(Path(spec_path).read_text())
    case = CASES[spec["case"]]
    team = RanksTeam() if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    if team is None and torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    started = time.perf_counter()
    base = load_model({"name_or_path": MODEL}).model
    config = training_config(case, spec["steps"], spec["output_dir"])
    model = apply_lora(base, config["lora"], seed=0)
    examples = make_examples(case["seq"], case["per_step"] * spec["steps"], seed=1)
    trainer = Trainer(model, examples, config["training"], run_config=config, handle_sigint=False, team=team)
    built = time.perf_counter() - started
    device = next(p for p in model.parameters() if p.requires_grad).device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        result = trainer.train()
    finally:
        if team is not None:
            team.close()
    if result.status != "completed":
        raise RuntimeError(result.message)
    if team is None or team.is_leader:
        tokens = case["per_step"] * case["seq"]
        seconds = [tokens / m.tokens_per_second for m in result.metrics]
        step = statistics.median(seconds[1:] or seconds)
        figures = {
            "model_built_seconds": round(built, 1),
            "step_seconds": round(step, 3),
            "tokens_per_second": round(tokens / step),
            "all_step_seconds": [round(s, 3) for s in seconds],
            "losses": [round(m.loss, 5) for m in result.metrics],
            "peak_gib_largest_gpu": result.metrics[-1].gpu_memory_gib,
        }
        Path(spec["result"]).write_text(json.dumps(figures))
    return 0


def in_process(case: str, steps: int, folder: Path) -> dict:
    """The same training in this process, with no launcher and no process group: the kernel's way."""
    import gc

    import torch

    spec = folder / f"{case}-in-process.json"
    result = folder / f"{case}-in-process.result.json"
    spec.write_text(
        json.dumps(
            {"case": case, "steps": steps, "result": str(result), "output_dir": str(folder / f"runs-{case}-in-process")}
        )
    )
    started = time.perf_counter()
    one_rank(str(spec))
    seconds = time.perf_counter() - started
    gc.collect()
    torch.cuda.empty_cache()  # the torchrun jobs after this need the whole GPU
    return {"case": case, "gpus": "in-process", "job_seconds": round(seconds, 1), **json.loads(result.read_text())}


def launch(case: str, gpus: int, steps: int, folder: Path) -> dict:
    """One torchrun job of ``gpus`` ranks; its figures, or its output when it fails."""
    spec = folder / f"{case}-{gpus}.json"
    result = folder / f"{case}-{gpus}.result.json"
    spec.write_text(
        json.dumps(
            {"case": case, "steps": steps, "result": str(result), "output_dir": str(folder / f"runs-{case}-{gpus}")}
        )
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(gpus),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        __file__,
        "--rank-of",
        str(spec),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{case} on {gpus} GPUs failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}")
    return {
        "case": case,
        "gpus": gpus,
        "job_seconds": round(time.perf_counter() - started, 1),
        **json.loads(result.read_text()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", default=None, help="comma list of GPU counts (default: 1 and all visible)")
    parser.add_argument("--cases", default="attention-1024,experts-1024")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--in-process", action="store_true", help="also train in this process first, as the notebook's kernel does"
    )
    parser.add_argument("--rank-of", default=None, help=argparse.SUPPRESS)  # set for the ranks torchrun starts
    parser.add_argument(
        "--json", default=os.path.join(os.environ["OUT"], "data_parallel.json") if os.environ.get("OUT") else None
    )
    args = parser.parse_args(argv)
    if args.rank_of:
        return one_rank(args.rank_of)

    import torch

    count = torch.cuda.device_count()
    if count < (1 if args.in_process else 2):
        needs = "one with --in-process" if args.in_process else "two or more"
        print(f"SKIP data_parallel: {count} CUDA GPU(s) visible to torch {torch.__version__}; it needs {needs}.")
        return 0
    counts = [int(c) for c in args.gpus.split(",")] if args.gpus else [1, count]
    print(f"device: {count} x {torch.cuda.get_device_name(0)}; torch {torch.__version__}", flush=True)

    results = []
    folder = Path(tempfile.mkdtemp(prefix="data-parallel-"))
    for name in [c for c in args.cases.split(",") if c]:
        if args.in_process:
            row = in_process(name, args.steps, folder)
            print(json.dumps(row), flush=True)
            results.append(row)
        for gpus in counts:
            row = launch(name, gpus, args.steps, folder)
            print(json.dumps(row), flush=True)
            results.append(row)
        baseline = "in-process" if args.in_process else counts[0]
        one = next(r for r in results if r["case"] == name and r["gpus"] == baseline)
        for row in results:
            if row["case"] == name and row is not one:
                row["speedup"] = round(row["tokens_per_second"] / one["tokens_per_second"], 2)
                row["first_loss_difference"] = abs(row["losses"][0] - one["losses"][0]) / one["losses"][0]
                row["largest_loss_difference"] = max(abs(a - b) / abs(b) for a, b in zip(row["losses"], one["losses"]))
                print(
                    f"{name}: {row['gpus']} GPUs {row['tokens_per_second']:,} tokens/s = {row['speedup']} x "
                    f"{baseline} ({one['tokens_per_second']:,}); losses differ by at most "
                    f"{row['largest_loss_difference']:.2e} (relative)",
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
