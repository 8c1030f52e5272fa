"""Training throughput on one GPU: our fast engine against the Hugging Face stack, side by side.

    python bench/train_throughput.py                                  # all four cases
    python bench/train_throughput.py --cases attention-1024 --steps 3
    python bench/train_throughput.py --json out.json

The model is the gpt-oss-20b architecture with seeded random bf16 weights drawn on the GPU
(embedded:gpt-oss-20b-random). Each case trains the same LoRA adapter from the same start on the
same token sequences, in the same order, first with the baseline, then with our engine:

- baseline: what a person gets from transformers + peft: ``model(input_ids, labels=...)`` per
  micro-batch of one sequence (eager attention with sinks, transformers' grouped_mm experts, the
  loss over the full-vocabulary logits), fused torch AdamW, gradients clipped to 1.0. Gradient
  checkpointing off (the fastest setting that fits); on an out-of-memory error it is retried on.
- ours: ``Trainer`` with ``engine: fast`` (packed micro-batches, flash attention with sinks, grouped
  experts with factorised expert LoRA, chunked output loss), same optimizer and clipping.

Cases: attention-1024 (LoRA r=8 on q/k/v/o, 16 sequences of 1,024 tokens per step, the reference
setting), attention-4096 (4 x 4,096), experts-1024 and experts-4096 (LoRA on the experts too). The
loss mask covers the last 3/4 of each sequence. Step 1 includes warm-up; the speed figure is the
median of the later steps. Without CUDA it says why and exits 0.
"""

from __future__ import annotations

import argparse
import gc
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

CASES = {
    "attention-1024": {"experts": False, "seq": 1024, "per_step": 16},
    "attention-4096": {"experts": False, "seq": 4096, "per_step": 4},
    "experts-1024": {"experts": True, "seq": 1024, "per_step": 16},
    "experts-4096": {"experts": True, "seq": 4096, "per_step": 4},
}
LEARNING_RATE = 2e-4


def gib(n: float) -> float:
    return round(n / 2**30, 2)


def make_examples(seq: int, count: int, seed: int):
    import torch

    from oss_finetune.training.trainer import TrainingExample

    generator = torch.Generator().manual_seed(seed)
    prompt = seq // 4
    return [
        TrainingExample(
            torch.randint(0, 199_998, (seq,), generator=generator).tolist(), [False] * prompt + [True] * (seq - prompt)
        )
        for _ in range(count)
    ]


def baseline(model, steps, checkpointing: bool):
    """transformers + peft as a person would drive them; returns per-step (seconds, loss, tokens), peak."""
    import torch

    inner = model.get_base_model()
    inner.config.use_cache = False
    if checkpointing:
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        inner.enable_input_require_grads()
    else:
        inner.gradient_checkpointing_disable()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=LEARNING_RATE, weight_decay=0.0, fused=True)
    device = params[0].device
    torch.cuda.reset_peak_memory_stats(device)
    rows = []
    for samples in steps:
        torch.cuda.synchronize()
        started = time.perf_counter()
        counts = [sum(s.trained[1:]) for s in samples]
        total = sum(counts)
        loss_sum = 0.0
        for sample, count in zip(samples, counts):
            ids = torch.tensor([sample.input_ids], device=device)
            labels = ids.clone()
            labels[0, ~torch.tensor(sample.trained, device=device)] = -100
            loss = model(input_ids=ids, labels=labels).loss  # mean over this sequence's trained tokens
            (loss * count / total).backward()
            loss_sum += float(loss.detach()) * count
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        rows.append((time.perf_counter() - started, loss_sum / total, sum(len(s.input_ids) for s in samples)))
    if checkpointing:
        inner.gradient_checkpointing_disable()
    return rows, torch.cuda.max_memory_allocated(device)


def ours(model, examples, per_step: int, steps: int, checkpointing: bool, pack_tokens: int | None):
    import torch

    from oss_finetune.training.trainer import Trainer

    settings = {
        "max_steps": steps,
        "batch_size": 1,
        "gradient_accumulation_steps": per_step,
        "learning_rate": LEARNING_RATE,
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "lr_scheduler": "constant",
        "optimizer": "adamw_torch",
        "gradient_checkpointing": checkpointing,
        "engine": "fast",
        "pack_tokens": pack_tokens,
        "save_steps": 10_000,
        "output_dir": tempfile.mkdtemp(prefix="throughput-"),
    }
    trainer = Trainer(model, examples, settings, handle_sigint=False)
    device = next(p for p in model.parameters() if p.requires_grad).device
    torch.cuda.reset_peak_memory_stats(device)
    result = trainer.train()
    if result.status != "completed":
        raise RuntimeError(result.message)
    tokens = per_step * len(examples[0].input_ids)
    rows = [(tokens / m.tokens_per_second, m.loss, tokens) for m in result.metrics]
    return rows, torch.cuda.max_memory_allocated(device), trainer


def summary(rows, peak):
    later = rows[1:] or rows
    seconds = statistics.median(r[0] for r in later)
    return {
        "step_seconds": round(seconds, 3),
        "tokens_per_second": round(later[0][2] / seconds),
        "losses": [round(r[1], 5) for r in rows],
        "all_step_seconds": [round(r[0], 3) for r in rows],
        "peak_gib": gib(peak),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument(
        "--ours",
        default="ckpt",
        help="comma list of our variants: ckpt, nockpt, or ckpt:N / nockpt:N for N pack tokens",
    )
    parser.add_argument("--baseline-checkpointing", action="store_true", help="start the baseline with checkpointing")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the timed runs, profile two steps of our first variant and print the costliest GPU kernels",
    )
    parser.add_argument(
        "--longest",
        default="",
        help="comma list of sequence lengths: after the cases, one training "
        "step of one sequence each (ours, checkpointing) until one does not fit",
    )
    parser.add_argument(
        "--mxfp4",
        type=int,
        default=0,
        metavar="SEQ",
        help="last: keep the experts in MXFP4, cap the allocator at --mxfp4-cap-gib and train LoRA on "
        "attention with 4 sequences of SEQ tokens per step",
    )
    parser.add_argument("--mxfp4-cap-gib", type=float, default=15.5)
    parser.add_argument(
        "--longest-mxfp4",
        default="",
        help="like --longest, with the experts in MXFP4 (last; replaces --mxfp4, since quantizing cannot be undone)",
    )
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=None,
        help="cap this process's GPU memory (e.g. 79.2 to stand for an H100 80GB on a larger card)",
    )
    parser.add_argument(
        "--json", default=os.path.join(os.environ["OUT"], "train_throughput.json") if os.environ.get("OUT") else None
    )
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(f"SKIP train_throughput: no CUDA GPU visible to torch {torch.__version__}; it needs an ~80 GB GPU.")
        return 0

    import peft
    import transformers

    from oss_finetune.modeling.model import apply_lora, load_model, trainable_parameters
    from oss_finetune.training.trainer import TrainingError

    device_name = torch.cuda.get_device_name(0)
    if args.memory_limit_gib:
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.memory_limit_gib * 2**30 / total), 0)
        device_name += f" (capped at {args.memory_limit_gib} GiB)"
    print(
        f"device: {device_name}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"peft {peft.__version__}",
        flush=True,
    )
    started = time.perf_counter()
    loaded = load_model({"name_or_path": "embedded:gpt-oss-20b-random"})
    base = loaded.model
    print(
        f"model built in {time.perf_counter() - started:.1f} s, {gib(torch.cuda.memory_allocated()):.1f} GiB; "
        f"attention {base.config._attn_implementation}, experts {getattr(base.config, '_experts_implementation', '?')}",
        flush=True,
    )

    results = []
    current_experts = None
    model = None
    for name in [c for c in args.cases.split(",") if c]:
        case = CASES[name]
        if case["experts"] != current_experts:
            if model is not None:
                base = model.unload()
            model = apply_lora(
                base, {"r": args.rank, "alpha": 2 * args.rank, "target_experts": case["experts"]}, seed=0
            )
            current_experts = case["experts"]
            start_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

        def reset(model=model, start_state=start_state):
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if n in start_state:
                        p.copy_(start_state[n])
            gc.collect()
            torch.cuda.empty_cache()

        examples = make_examples(case["seq"], case["per_step"] * args.steps, seed=0)
        row = {"case": name, "trainable": trainable_parameters(model), **case}
        # Our Trainer shuffles with its seed; the baseline takes the sequences in that same order.
        probe = __import__("oss_finetune.training.trainer", fromlist=["Trainer"]).Trainer(
            model,
            examples,
            {
                "max_steps": args.steps,
                "batch_size": 1,
                "gradient_accumulation_steps": case["per_step"],
                "output_dir": tempfile.mkdtemp(),
            },
            handle_sigint=False,
        )
        steps = [probe._take(i * case["per_step"], case["per_step"]) for i in range(args.steps)]
        if not args.skip_baseline:
            checkpointing = args.baseline_checkpointing
            while True:
                reset()
                try:
                    rows, peak = baseline(model, steps, checkpointing)
                    row["baseline"] = {**summary(rows, peak), "gradient_checkpointing": checkpointing}
                    break
                except torch.OutOfMemoryError:
                    model.zero_grad(set_to_none=True)
                    if checkpointing:
                        row["baseline"] = {"error": "out of memory with gradient checkpointing"}
                        break
                    print(f"{name}: baseline out of memory without checkpointing; again with it", flush=True)
                    checkpointing = True
            print(json.dumps({"case": name, "baseline": row["baseline"]}), flush=True)
        for variant in args.ours.split(","):
            kind, _, pack = variant.partition(":")
            reset()
            try:
                rows, peak, trainer = ours(
                    model, examples, case["per_step"], args.steps, kind == "ckpt", int(pack) if pack else None
                )
                row[f"ours-{variant}"] = {**summary(rows, peak), "pack_tokens": trainer.pack_tokens}
            except (torch.OutOfMemoryError, TrainingError):  # the Trainer reports an OOM as a TrainingError
                model.zero_grad(set_to_none=True)
                row[f"ours-{variant}"] = {"error": "out of memory"}
            print(json.dumps({"case": name, f"ours-{variant}": row[f"ours-{variant}"]}), flush=True)
        results.append(row)
        if args.profile:
            kind, _, pack = args.ours.split(",")[0].partition(":")
            reset()
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
                ours(
                    model,
                    examples[: 2 * case["per_step"]],
                    case["per_step"],
                    2,
                    kind == "ckpt",
                    int(pack) if pack else None,
                )
            table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=30, max_name_column_width=70)
            print(table, flush=True)
            if os.environ.get("OUT"):
                Path(os.environ["OUT"], f"profile-{name}.txt").write_text(table)

    def one_sequence_steps(model, lengths: str, key: str) -> list[dict]:
        """One optimizer step of one sequence per length, in order, until one does not fit."""
        found = []
        for seq in [int(n) for n in lengths.split(",")]:
            gc.collect()
            torch.cuda.empty_cache()
            try:
                rows, peak, _ = ours(model, make_examples(seq, 1, seed=1), 1, 1, True, seq)
                found.append({"seq": seq, "fits": True, "step_seconds": round(rows[0][0], 2), "peak_gib": gib(peak)})
            except (torch.OutOfMemoryError, TrainingError):
                model.zero_grad(set_to_none=True)
                found.append({"seq": seq, "fits": False})
            print(json.dumps({key: found[-1]}), flush=True)
            if not found[-1]["fits"]:
                break
        return found

    longest = []
    if args.longest:
        if model is not None:
            base = model.unload()
        model = apply_lora(base, {"r": args.rank, "alpha": 2 * args.rank}, seed=0)
        longest = one_sequence_steps(model, args.longest, "longest")

    longest_mxfp4 = []
    if args.longest_mxfp4:
        from oss_finetune.modeling.mxfp4 import quantize_experts

        if model is not None:
            base = model.unload()
        model = None
        gc.collect()
        torch.cuda.empty_cache()
        quantize_experts(base)
        gc.collect()
        torch.cuda.empty_cache()
        model = apply_lora(base, {"r": args.rank, "alpha": 2 * args.rank}, seed=0)
        longest_mxfp4 = one_sequence_steps(model, args.longest_mxfp4, "longest_mxfp4")

    mxfp4_row = None
    if args.mxfp4 and not args.longest_mxfp4:
        from oss_finetune.modeling.mxfp4 import expert_bytes, quantize_experts

        if model is not None:
            base = model.unload()
        model = None
        gc.collect()
        torch.cuda.empty_cache()
        bf16_experts = expert_bytes(base)
        quantize_experts(base)
        gc.collect()
        torch.cuda.empty_cache()
        weights = torch.cuda.memory_allocated()
        total = torch.cuda.get_device_properties(0).total_memory
        torch.cuda.set_per_process_memory_fraction(args.mxfp4_cap_gib * 2**30 / total, 0)
        model = apply_lora(base, {"r": args.rank, "alpha": 2 * args.rank}, seed=0)
        try:
            rows, peak, _ = ours(
                model, make_examples(args.mxfp4, 4 * args.steps, seed=2), 4, args.steps, True, args.mxfp4
            )
            mxfp4_row = {
                "seq": args.mxfp4,
                "cap_gib": args.mxfp4_cap_gib,
                "weights_gib": gib(weights),
                "experts_bf16_gib": gib(bf16_experts),
                "experts_mxfp4_gib": gib(expert_bytes(base)),
                **summary(rows, peak),
            }
        except (torch.OutOfMemoryError, TrainingError) as error:
            mxfp4_row = {
                "seq": args.mxfp4,
                "cap_gib": args.mxfp4_cap_gib,
                "weights_gib": gib(weights),
                "error": str(error).splitlines()[0][:300],
            }
        print(json.dumps({"mxfp4": mxfp4_row}), flush=True)

    print()
    print(
        f"{device_name}, {datetime.now(timezone.utc).date().isoformat()}: tokens/s (step s, peak GiB), ours / baseline"
    )
    for row in results:
        b = row.get("baseline", {})
        for key in [k for k in row if k.startswith("ours-")]:
            o = row[key]
            if "error" in o or "error" in b or not b:
                print(f"{row['case']:>15} {key:<16} {o} vs {b}")
                continue
            loss_gap = max(abs(x - y) / abs(y) for x, y in zip(o["losses"], b["losses"]))
            print(
                f"{row['case']:>15} {key:<16} {o['tokens_per_second']:>7,} ({o['step_seconds']:.2f} s, "
                f"{o['peak_gib']:.1f}) vs {b['tokens_per_second']:>6,} ({b['step_seconds']:.2f} s, {b['peak_gib']:.1f})"
                f"  x{o['tokens_per_second'] / b['tokens_per_second']:.2f}  losses within {100 * loss_gap:.2f}%"
            )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": device_name,
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                    "results": results,
                    "longest": longest,
                    "longest_mxfp4": longest_mxfp4,
                    "mxfp4": mxfp4_row,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
