"""Generation speed on one GPU: ``modeling.decoding`` side by side with transformers' ``generate``.

    python bench/generation_speed.py                       # gpt-oss-20b architecture, every case
    python bench/generation_speed.py --arch 120b           # gpt-oss-120b, MXFP4 experts (bf16 does not fit)
    python bench/generation_speed.py --json out.json

Seeded random weights in the real architecture (embedded:gpt-oss-20b-random / -120b-random), greedy,
a prompt of --prompt tokens and --new new tokens, nothing stopping early. Each case runs through
transformers' ``generate`` (the model as peft leaves it, right-padded batches left-padded as HF wants)
and through ``modeling.decoding.generate_batch``, in one process:

- base model, LoRA on attention, LoRA on attention and the experts (unmerged), MXFP4 experts;
- batch 1 (chat) and batch 64 (the evaluation);
- before/after: one prompt with and without the adapter as one batch of two.

The figure is new tokens per second of the whole call, prefill included, after one warm-up call: for
transformers a short one, for ours one of the same shape, which captures the decode step that later
calls of that shape replay (a chat's next turn, an evaluation's next batch); the first call of a shape
also pays the capture, about as much as fifty decoded tokens. The bound at batch 1: each token reads every active parameter once (attention,
router, lm_head, and top_k of the experts), at --bandwidth bytes/s (H200: 4.8e12).

Agreement: greedy tokens of both paths for the batch-1 base case, and where they first differ, the gap
between transformers' two best logits at that step (bf16 rounding flips near-ties; a gap well above
the bf16 resolution would be a bug). Without CUDA it says why and exits 0.
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


def active_bytes(model) -> int:
    """Bytes one decoded token reads at batch 1: everything but the embedding and the unchosen experts."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = inner.config
    share = config.num_experts_per_tok / config.num_local_experts
    total = 0
    for name, tensor in list(inner.named_parameters()) + list(inner.named_buffers()):
        if "embed_tokens" in name:
            continue
        size = tensor.numel() * tensor.element_size()
        total += size * share if ".experts." in name and "lora" not in name else size
    return int(total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=["20b", "120b"], default="20b")
    parser.add_argument("--prompt", type=int, default=200)
    parser.add_argument("--new", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64, help="the evaluation's batch")
    parser.add_argument("--bandwidth", type=float, default=4.8e12, help="the GPU's memory bandwidth, bytes/s")
    parser.add_argument("--skip-transformers", action="store_true", help="only our path (faster)")
    parser.add_argument(
        "--transformers-batch-1-only", action="store_true", help="transformers' side at batch 1 only (saves minutes)"
    )
    parser.add_argument("--json", help="write the figures to this file too")
    parser.add_argument(
        "--profile", action="store_true", help="also: where a batch-1 decode step's time goes, kernel by kernel"
    )
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("generation_speed: no CUDA GPU here; this benchmark measures the GPU path only")
        return 0

    from oss_finetune.modeling.decoding import generate_batch
    from oss_finetune.modeling.model import PAD_TOKEN_ID, apply_lora, load_model
    from oss_finetune.training.language import _greedy_batch

    never = (PAD_TOKEN_ID,)  # a random model is never shown it, so nothing stops early
    name = f"embedded:gpt-oss-{args.arch}-random"
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(1000, 190_000, (args.prompt,), generator=generator).tolist()
    batch_prompts = [prompt[i:] + prompt[:i] for i in range(args.batch)]
    figures: dict = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "architecture": args.arch,
        "prompt_tokens": args.prompt,
        "new_tokens": args.new,
        "cases": [],
    }

    def timed(label: str, fn, bound: float | None = None, warm_up: int = 4) -> float:
        fn(warm_up)  # compiles, allocates, fills the caches (ours: captures the step it then replays)
        torch.cuda.synchronize()
        started = time.perf_counter()
        made = fn(args.new)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        rate = made / seconds
        case = {"case": label, "seconds": round(seconds, 3), "new_tokens": made, "tokens_per_second": round(rate, 1)}
        line = f"{label:58s} {made:6d} tokens in {seconds:6.2f} s: {rate:8.1f} tokens/s"
        if bound:
            case["fraction_of_bandwidth_bound"] = round(rate / bound, 3)
            line += f" ({rate / bound:.0%} of the {bound:.0f} tokens/s bound)"
        figures["cases"].append(case)
        print(line, flush=True)
        return rate

    def ours(model, prompts, **kw):
        return lambda n: sum(len(r) for r in generate_batch(model, prompts, n, stop_token_ids=never, **kw))

    def theirs(model, prompts):
        return lambda n: sum(len(r) for r in _greedy_batch(model, prompts, n, PAD_TOKEN_ID, never))

    def side_by_side(kind: str, model, compare_batch: bool = True) -> None:
        bound = args.bandwidth / active_bytes(model)
        mine = timed(f"ours, {kind}, batch 1", ours(model, [prompt]), bound, args.new)
        if not args.skip_transformers:
            other = timed(f"transformers, {kind}, batch 1", theirs(model, [prompt]), bound)
            print(f"    batch 1: {mine / other:.1f} x transformers")
        mine = timed(f"ours, {kind}, batch {args.batch}", ours(model, batch_prompts), warm_up=args.new)
        if compare_batch and not args.skip_transformers and not args.transformers_batch_1_only:
            other = timed(f"transformers, {kind}, batch {args.batch}", theirs(model, batch_prompts))
            print(f"    batch {args.batch}: {mine / other:.1f} x transformers")

    def agreement(model) -> None:
        from oss_finetune.modeling.model import model_device

        mine = generate_batch(model, [prompt], args.new, stop_token_ids=never)[0]
        ids = torch.tensor([prompt], device=model_device(model))
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=args.new,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=list(never),
            pad_token_id=PAD_TOKEN_ID,
            output_scores=True,
            return_dict_in_generate=True,
        )
        other = out.sequences[0, len(prompt) :].tolist()
        first = next((i for i, (a, b) in enumerate(zip(mine, other)) if a != b), None)
        record = {"equal_tokens": first if first is not None else len(mine), "of": len(mine)}
        if first is not None:
            top = out.scores[first][0].float().topk(2).values
            record["logit_gap_at_first_difference"] = round(float(top[0] - top[1]), 4)
        figures["agreement_with_transformers_bf16"] = record
        print(f"agreement with transformers (greedy, bf16): {record}", flush=True)

    def profile(kind: str, model) -> None:
        """One eager batch-1 step under the profiler (kernels, their count and GPU time) and the graph's
        replay time: if the kernels' sum is near the replay time, the step is bound by the kernels."""
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as profiler

        from oss_finetune.modeling.decoding import Decoder

        decoder = Decoder(model, [prompt], 64, cuda_graphs=False)
        decoder.prefill()
        token = torch.zeros(1, dtype=torch.long, device="cuda")
        for _ in range(3):
            decoder.step(token)
        torch.cuda.synchronize()
        with profiler(activities=[ProfilerActivity.CUDA]) as prof:
            decoder.step(token)
            torch.cuda.synchronize()
        events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"]
        kernels = sum(e.count for e in events)
        busy = sum(e.self_device_time_total for e in events) / 1000
        graphed = Decoder(model, [prompt], 64)
        torch.cuda.synchronize()
        started = time.perf_counter()
        graphed.prefill()
        torch.cuda.synchronize()
        prefill = (time.perf_counter() - started) * 1000
        for _ in range(3):
            graphed.step(token)
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(40):
            graphed.step(token)
        torch.cuda.synchronize()
        replay = (time.perf_counter() - started) / 40 * 1000
        record = {
            "case": kind,
            "kernels_per_step": kernels,
            "kernel_ms": round(busy, 3),
            "graph_step_ms": round(replay, 3),
            "prefill_ms": round(prefill, 1),
        }
        figures.setdefault("profile", []).append(record)
        print(
            f"profile, {kind}: {kernels} kernels, {busy:.2f} ms of kernel time, graph step {replay:.2f} ms; "
            f"prefill of the {len(prompt)}-token prompt {prefill:.1f} ms"
        )
        for e in sorted(events, key=lambda e: -e.self_device_time_total)[:14]:
            print(f"    {e.self_device_time_total / 1000:7.3f} ms {e.count:5d} x  {e.key[:110]}")

    if args.arch == "20b":
        loaded = load_model({"name_or_path": name})
        model = loaded.model
        agreement(model)
        if args.profile:
            profile("base model", model)
        side_by_side("base model", model)
        attention = apply_lora(model, {"r": 8, "alpha": 16}, seed=0)
        if args.profile:
            profile("LoRA on attention", attention)
        side_by_side("LoRA on attention", attention)
        timed(
            "ours, before/after (adapter off and on), batch 2",
            ours(attention, [prompt, prompt], adapter_rows=[False, True]),
            warm_up=args.new,
        )
        model = attention.unload()
        experts = apply_lora(model, {"r": 8, "alpha": 16, "target_experts": True}, seed=0)
        side_by_side("LoRA on attention + experts", experts, compare_batch=False)
        model = experts.unload()
        del loaded, attention, experts
        torch.cuda.empty_cache()
    loaded = load_model({"name_or_path": name, "mxfp4_experts": True})
    if args.profile:
        profile("MXFP4 experts", loaded.model)
    side_by_side("MXFP4 experts", loaded.model, compare_batch=False)

    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
