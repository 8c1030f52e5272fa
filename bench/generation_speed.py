"""Generation speed on one GPU: the paths chat, before/after and the evaluation take today.

    python bench/generation_speed.py                 # every case
    python bench/generation_speed.py --json out.json

The gpt-oss-20b architecture with seeded random bf16 weights (embedded:gpt-oss-20b-random), greedy,
a prompt of --prompt tokens and --new new tokens:

- chat: ``training.generation.generate`` at batch 1 on the base model, with LoRA on attention, and
  with LoRA on attention and the experts (the adapter unmerged, as the notebook holds it);
- eval: ``training.language._greedy_batch`` (left-padded prompts through transformers' generate),
  attention LoRA, at batch 16 and 64;
- the same cases through ``modeling.decoding.generate_batch`` (our KV cache on the fast engine's pieces).

The figure is new tokens per second of the whole call (prefill included), after one warm-up call.
The bound it is compared with: batch-1 decoding reads every active parameter once per token.
Without CUDA it says why and exits 0.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import oss_finetune.embedded  # noqa: E402,F401 - registers the embedded models this bench loads by name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", type=int, default=200)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--batches", default="16,64", help="eval batch sizes")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("generation_speed: no CUDA GPU here; this benchmark measures the GPU path only")
        return 0

    from oss_finetune.modeling.decoding import generate_batch
    from oss_finetune.modeling.model import PAD_TOKEN_ID, apply_lora, load_model
    from oss_finetune.training.generation import generate
    from oss_finetune.training.language import _greedy_batch

    # Nothing stops a random model early: the stop set is one token it is never shown.
    never = (PAD_TOKEN_ID,)
    loaded = load_model({"name_or_path": "embedded:gpt-oss-20b-random"})
    device = loaded.device
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(1000, 190_000, (args.prompt,), generator=generator).tolist()
    figures: dict = {
        "device": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "prompt_tokens": args.prompt,
        "new_tokens": args.new,
        "cases": [],
    }

    def timed(label: str, fn, tokens: int) -> None:
        fn()  # warm-up
        torch.cuda.synchronize(device)
        started = time.perf_counter()
        made = fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        rate = made / seconds
        figures["cases"].append(
            {"case": label, "seconds": round(seconds, 3), "new_tokens": made, "tokens_per_second": round(rate, 1)}
        )
        print(f"{label:40s} {made:6d} new tokens in {seconds:6.2f} s: {rate:8.1f} tokens/s", flush=True)

    def chat(model):
        return lambda: len(generate(model, None, prompt, args.new, stop_token_ids=never))

    def ours(model, prompts):
        return lambda: sum(len(r) for r in generate_batch(model, prompts, args.new, stop_token_ids=never))

    def theirs(model, prompts):
        return lambda: sum(len(r) for r in _greedy_batch(model, prompts, args.new, PAD_TOKEN_ID, never))

    timed("chat, base model, batch 1", chat(loaded.model), args.new)
    timed("ours, base model, batch 1", ours(loaded.model, [prompt]), args.new)
    attention = apply_lora(loaded.model, {"r": 8, "alpha": 16}, seed=0)
    timed("chat, LoRA on attention, batch 1", chat(attention), args.new)
    timed("ours, LoRA on attention, batch 1", ours(attention, [prompt]), args.new)
    for batch in [int(b) for b in args.batches.split(",") if b]:
        prompts = [prompt[i:] + prompt[:i] for i in range(batch)]
        timed(f"eval, LoRA on attention, batch {batch}", theirs(attention, prompts), args.new * batch)
        timed(f"ours, LoRA on attention, batch {batch}", ours(attention, prompts), args.new * batch)
    base = attention.unload()
    experts = apply_lora(base, {"r": 8, "alpha": 16, "target_experts": True}, seed=0)
    timed("chat, LoRA on attention + experts, batch 1", chat(experts), args.new)
    timed("ours, LoRA on attention + experts, batch 1", ours(experts, [prompt]), args.new)

    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
