"""The memory planner against measurement: predicted vs measured peak GPU memory of real training steps.

    python bench/memory_planner.py                      # every configuration, on a CUDA GPU
    python bench/memory_planner.py --configs fast-ckpt-16x1024,hf-ckpt-1x1024
    python bench/memory_planner.py --smoke              # embedded:tiny on the CPU: the script's plumbing only

On a GPU it builds embedded:gpt-oss-20b-random once (the gpt-oss-20b architecture, seeded random
bf16 weights drawn on the GPU) and, for each configuration, puts a fresh LoRA adapter on it, runs
``--steps`` optimizer steps through our Trainer on random token sequences (loss mask on the last 3/4
of each, as in bench/train_throughput.py) and records the largest per-step
``torch.cuda.max_memory_allocated`` and ``max_memory_reserved`` (the Trainer resets the peak at each
step; the cache is emptied between configurations). The prediction comes from
``oss_finetune.training.memory.plan_memory`` with the same config, made before anything is measured, from the
shapes alone (the planner is not told the measured weight size).

One JSON line per configuration as it finishes, then a table of predicted vs measured with the error
in percent; with ``OUT`` set (or ``--json FILE``) the whole record goes to ``memory_planner.json``.
The configuration that keeps the experts in MXFP4 runs last: it drops the bf16 model and loads it
again with ``mxfp4_experts`` (drawn and quantized layer by layer), measuring that load's peak against
the planner's prediction too. Configurations are skipped
once ``--budget-seconds`` have passed, so the run stays inside a fixed time on a shared GPU.

Without CUDA, or with --smoke, it trains embedded:tiny on the CPU: predictions are printed, nothing
is measured (torch has no peak counter for host memory), and the test suite runs it so it cannot rot.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oss_finetune.embedded  # noqa: E402,F401 - registers the embedded models this bench loads by name

GIB = 2**30

# name -> (lora section, training section, sequence length, sequences per optimizer step)
# Gradient accumulation only repeats micro-batches, so the transformers-engine cases accumulate 2
# (not the reference 16): the peak is the same, the run is 8 x shorter.
CONFIGS: dict[str, dict] = {
    "fast-ckpt-16x1024": dict(lora={}, training=dict(engine="fast"), seq=1024, per_step=16),
    "fast-nockpt-16x1024": dict(
        lora={}, training=dict(engine="fast", gradient_checkpointing=False), seq=1024, per_step=16
    ),
    "fast-ckpt-4x4096": dict(lora={}, training=dict(engine="fast"), seq=4096, per_step=4),
    "fast-ckpt-experts-16x1024": dict(
        lora=dict(target_experts=True), training=dict(engine="fast"), seq=1024, per_step=16
    ),
    "fast-ckpt-r64-16x1024": dict(lora=dict(r=64, alpha=128), training=dict(engine="fast"), seq=1024, per_step=16),
    "fast-ckpt-1x32768": dict(lora={}, training=dict(engine="fast"), seq=32768, per_step=1),
    "hf-ckpt-1x1024": dict(lora={}, training=dict(engine="transformers", batch_size=1), seq=1024, per_step=2),
    "hf-nockpt-1x1024": dict(
        lora={}, training=dict(engine="transformers", batch_size=1, gradient_checkpointing=False), seq=1024, per_step=2
    ),
    "hf-ckpt-2x1024": dict(lora={}, training=dict(engine="transformers", batch_size=2), seq=1024, per_step=4),
    "hf-ckpt-experts-1x1024": dict(
        lora=dict(target_experts=True), training=dict(engine="transformers", batch_size=1), seq=1024, per_step=2
    ),
    "fast-ckpt-experts-8bit-16x1024": dict(
        lora=dict(target_experts=True),
        training=dict(engine="fast", optimizer="adamw_8bit"),
        seq=1024,
        per_step=16,
        needs="bitsandbytes",
    ),
    # Last: the model is loaded again with its experts in MXFP4.
    "mxfp4-fast-ckpt-4x4096": dict(lora={}, training=dict(engine="fast"), seq=4096, per_step=4, mxfp4=True),
    "mxfp4-fast-ckpt-16x1024": dict(lora={}, training=dict(engine="fast"), seq=1024, per_step=16, mxfp4=True),
}
SMOKE_CONFIGS: dict[str, dict] = {
    "smoke-ckpt-2x64": dict(
        lora=dict(r=4, alpha=8), training=dict(engine="transformers", batch_size=2), seq=64, per_step=4
    ),
    "smoke-nockpt-1x64": dict(
        lora=dict(r=4, alpha=8, target_experts=True),
        training=dict(engine="transformers", batch_size=1, gradient_checkpointing=False),
        seq=64,
        per_step=2,
    ),
}


def gib(n: float | None) -> float | None:
    return None if n is None else round(n / GIB, 3)


def training_section(case: dict, steps: int, output_dir: str) -> dict:
    per_step, training = case["per_step"], dict(case["training"])
    batch = training.pop("batch_size", 1)
    return {
        "max_steps": steps,
        "batch_size": batch,
        "gradient_accumulation_steps": per_step // batch,
        "learning_rate": 2e-4,
        "warmup_steps": 0,
        "lr_scheduler": "constant",
        "optimizer": "adamw_torch",
        "save_steps": 10_000,
        "output_dir": output_dir,
        **training,
    }


def plan_for(model_name: str, case: dict, training: dict, *, device: str, gpu, mxfp4: bool):
    from oss_finetune.training.memory import plan_memory

    seq = case["seq"]
    config = {
        "model": {"name_or_path": model_name, "mxfp4_experts": mxfp4},
        "data": {"max_seq_length": seq},
        "lora": case["lora"],
        "training": training,
    }
    trained = (seq - seq // 4) / seq
    return plan_memory(config, device=device, gpu=gpu, lengths=[seq] * case["per_step"], trained_fraction=trained)


def run_case(name: str, case: dict, model, *, steps: int, model_name: str, device: str, gpu):
    """Train ``model`` (the base with a fresh adapter) with the case's settings and measure; returns the row."""
    import torch
    from train_throughput import make_examples

    from oss_finetune.modeling.model import trainable_parameters
    from oss_finetune.training.trainer import Trainer, TrainingError

    output_dir = tempfile.mkdtemp(prefix="memory-planner-")
    training = training_section(case, steps, output_dir)
    plan = plan_for(model_name, case, training, device=device, gpu=gpu, mxfp4=bool(case.get("mxfp4")))
    row = {
        "config": name,
        "engine": plan.engine,
        "seq": case["seq"],
        "per_step": case["per_step"],
        "lora": case["lora"],
        "training": {k: v for k, v in training.items() if k != "output_dir"},
        "trainable": trainable_parameters(model),
        "predicted_trainable": plan.trainable_parameters,
        "predicted_gib": gib(plan.peak_bytes),
        "predicted_reserved_gib": gib(plan.reserved_bytes),
        "predicted_phase": plan.phase,
        "predicted_parts": {p.name: gib(p.bytes) for p in plan.parts},
    }
    cuda = device == "cuda"
    steps_seen: list[dict] = []

    def measure(metrics):
        steps_seen.append(
            {
                "step": metrics.step,
                "allocated": torch.cuda.max_memory_allocated() if cuda else None,
                "reserved": torch.cuda.max_memory_reserved() if cuda else None,
                "loss": round(metrics.loss, 4),
            }
        )

    examples = make_examples(case["seq"], case["per_step"] * steps, seed=0)
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        row["allocated_before_gib"] = gib(torch.cuda.memory_allocated())
    trainer = Trainer(model, examples, training, handle_sigint=False)
    trainer.on_step(measure)
    started = time.perf_counter()
    try:
        result = trainer.train()
        row["status"] = result.status
    except (TrainingError, torch.OutOfMemoryError) as error:
        row["status"] = "failed"
        row["error"] = str(error).splitlines()[0][:300]
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["losses"] = [s["loss"] for s in steps_seen]
    if cuda and steps_seen:
        row["measured_gib"] = gib(max(s["allocated"] for s in steps_seen))
        row["measured_reserved_gib"] = gib(max(s["reserved"] for s in steps_seen))
        row["measured_per_step_gib"] = [gib(s["allocated"]) for s in steps_seen]
        row["error_pct"] = round(100 * (row["predicted_gib"] - row["measured_gib"]) / row["measured_gib"], 1)
        row["reserved_error_pct"] = round(
            100 * (row["predicted_reserved_gib"] - row["measured_reserved_gib"]) / row["measured_reserved_gib"], 1
        )
    else:
        row["measured_gib"] = None
    row["pack_tokens"] = trainer.pack_tokens if plan.engine == "fast" else None
    del trainer
    model.zero_grad(set_to_none=True)
    return row


def table(rows: list[dict]) -> str:
    lines = [
        f"{'config':<32} {'engine':<12} {'predicted':>9} {'measured':>9} {'error':>7} "
        f"{'pred. reserved':>14} {'reserved':>9} {'error':>7}  phase"
    ]
    for r in rows:

        def cell(key, width, fmt="{:.2f}", r=r):
            value = r.get(key)
            return (fmt.format(value) if value is not None else "–").rjust(width)

        lines.append(
            f"{r['config']:<32} {r['engine']:<12} {cell('predicted_gib', 9)} {cell('measured_gib', 9)} "
            f"{cell('error_pct', 6, '{:+.1f}')}% {cell('predicted_reserved_gib', 14)} "
            f"{cell('measured_reserved_gib', 9)} {cell('reserved_error_pct', 6, '{:+.1f}')}%  "
            f"{r.get('predicted_phase', '')}"
            + (f"  [{r['status']}: {r.get('error', '')}]" if r.get("status") not in (None, "completed") else "")
        )
    measured = [abs(r["error_pct"]) for r in rows if r.get("error_pct") is not None]
    if measured:
        within = sum(1 for e in measured if e <= 10)
        lines.append(
            f"{within} of {len(measured)} configurations predicted within 10% of the measured peak "
            f"(largest error {max(measured):.1f}%)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=None, help="comma list of configuration names (default: all)")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per configuration")
    parser.add_argument("--smoke", action="store_true", help="embedded:tiny on the CPU: check the plumbing")
    parser.add_argument(
        "--model",
        default="embedded:gpt-oss-20b-random",
        help="a full-size random model; embedded:gpt-oss-120b-random runs the MXFP4 configurations only",
    )
    # 270 s: a configuration started just before the budget (the MXFP4 one compiles its own kernels)
    # still ends well inside the 6 minutes a run may take on a shared H100.
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=270.0,
        help="skip the remaining configurations once this much time has passed",
    )
    parser.add_argument("--json", default=None, help="where to write the record (default: $OUT/memory_planner.json)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    import torch

    from oss_finetune.modeling.model import apply_lora, load_model
    from oss_finetune.training.memory import gpu_info, plan_memory

    smoke = args.smoke or not torch.cuda.is_available()
    if smoke and not args.smoke:
        print(
            "no CUDA GPU visible to torch: running the CPU smoke mode (embedded:tiny); nothing is measured", flush=True
        )
    catalogue = SMOKE_CONFIGS if smoke else CONFIGS
    names = args.configs.split(",") if args.configs else list(catalogue)
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; known: {', '.join(catalogue)}")
    # The MXFP4 case changes the model for good, so it runs after every other one.
    names.sort(key=lambda n: bool(catalogue[n].get("mxfp4")))

    model_name = "embedded:tiny" if smoke else args.model
    # The 120b's bf16 weights fit no GPU: only the configurations with the experts in MXFP4 can run.
    mxfp4_only = model_name == "embedded:gpt-oss-120b-random"
    if mxfp4_only:
        names = [n for n in names if catalogue[n].get("mxfp4")]
    device = "cpu" if smoke else "cuda"
    import peft
    import transformers

    record: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": "cpu" if smoke else torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "model": model_name,
        "steps": args.steps,
        "configs": [],
    }
    print(
        f"device: {record['device']}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"peft {peft.__version__}",
        flush=True,
    )
    gpu = gpu_info() if not smoke else None
    if gpu is not None:
        record["gpu_total_gib"] = gib(gpu.total_bytes)
        record["gpu_free_gib_before_load"] = gib(gpu.free_bytes)
    base = None
    base_in_mxfp4 = False
    if not mxfp4_only:
        load_plan = plan_memory({"model": {"name_or_path": model_name}}, device=device, gpu=gpu)
        if not smoke:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        loaded = load_model({"name_or_path": model_name, "device": device})
        base = loaded.model
        del loaded  # the base must be the model's only holder, so that the MXFP4 case can free it
        record["load"] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "predicted_weights_gib": gib(load_plan.weights_bytes),
        }
        if not smoke:
            record["load"]["measured_weights_gib"] = gib(torch.cuda.memory_allocated())
            record["load"]["measured_load_peak_gib"] = gib(torch.cuda.max_memory_allocated())
            record["load"]["free_after_load_gib"] = gib(torch.cuda.mem_get_info()[0])
        print(json.dumps({"load": record["load"]}), flush=True)

    bnb = True
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as missing
        bnb = False

    for name in names:
        case = catalogue[name]
        elapsed = time.perf_counter() - started
        if case.get("needs") == "bitsandbytes" and not bnb:
            row = {"config": name, "engine": "-", "status": "skipped", "error": "bitsandbytes does not import here"}
        elif elapsed > args.budget_seconds:
            row = {
                "config": name,
                "engine": "-",
                "status": "skipped",
                "error": f"time budget of {args.budget_seconds:.0f} s spent ({elapsed:.0f} s)",
            }
        else:
            if case.get("mxfp4") and not base_in_mxfp4:
                # The user's route: a fresh load with the experts kept in MXFP4 (drawn and quantized
                # layer by layer), so the bf16 model goes first and the load's own peak is measured.
                base_in_mxfp4 = True
                base = None
                gc.collect()
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
                mx_config = {"name_or_path": model_name, "device": device, "mxfp4_experts": True}
                mx_plan = plan_memory({"model": mx_config}, device=device, gpu=gpu)
                t1 = time.perf_counter()
                base = load_model(mx_config).model
                quantized = {
                    "seconds": round(time.perf_counter() - t1, 1),
                    "weights_gib": gib(torch.cuda.memory_allocated()),
                    "load_peak_gib": gib(torch.cuda.max_memory_allocated()),
                    "predicted_weights_gib": gib(mx_plan.weights_bytes),
                    "predicted_load_peak_gib": gib(mx_plan.load_peak_bytes),
                }
                print(json.dumps({"mxfp4_load": quantized}), flush=True)
                record["mxfp4_load"] = quantized
            model = apply_lora(base, {"alpha": 16, **case["lora"]}, seed=0)
            try:
                row = run_case(name, case, model, steps=args.steps, model_name=model_name, device=device, gpu=gpu)
            except Exception as error:  # noqa: BLE001 - one broken configuration must not cost the others
                row = {
                    "config": name,
                    "engine": "-",
                    "status": "failed",
                    "error": f"{type(error).__name__}: {str(error).splitlines()[0][:300] if str(error) else ''}",
                }
            finally:
                # The adapter's layers come out again, leaving the base weights for the next configuration.
                base = model.unload()
                del model
        print(json.dumps(row), flush=True)
        record["configs"].append(row)

    record["seconds"] = round(time.perf_counter() - started, 1)
    print()
    print(
        f"{record['device']}, {record['date'][:10]}: peak memory of one training step, predicted vs measured "
        f"(torch allocated / reserved, GiB)"
    )
    print(table(record["configs"]))
    target = args.json or (os.path.join(os.environ["OUT"], "memory_planner.json") if os.environ.get("OUT") else None)
    if target:
        Path(target).write_text(json.dumps(record, indent=1), encoding="utf-8")
        print(f"wrote {target}")
    print(f"total {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
