"""The tool-calling tutorial's run on the CPU: embedded:tiny-base, LoRA, the held-out tool-call rates.

    python bench/tool_calling.py [--steps 150] [--lr 5e-3] [--r 64] [--loss-mask assistant]
                                 [--targets q_proj,k_proj,v_proj,o_proj,lm_head] [--no-experts]
                                 [--batch 16] [--engine fast] [--limit 80] [--threads N] [--json out.json]

One process: load the base, measure the held-out rates without an adapter, train a fresh LoRA
adapter with the given settings on embedded:tool-calls, and measure again with it. Defaults are the
tutorial's (``notebook.tutorial.TOOL_SETTINGS``). Figures: the rates before and after, the training
time and loss, and the evaluation times, each wall seconds with the model loaded.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def main(argv: list[str] | None = None) -> int:
    from oss_finetune.notebook.tutorial import TOOL_SETTINGS

    lora, training, data = TOOL_SETTINGS["lora"], TOOL_SETTINGS["training"], TOOL_SETTINGS["data"]
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=training["max_steps"])
    parser.add_argument("--lr", type=float, default=training["learning_rate"])
    parser.add_argument("--r", type=int, default=lora["r"])
    parser.add_argument("--alpha", type=float, default=None, help="default: 2 x r")
    parser.add_argument("--loss-mask", default=data["loss_mask"])
    parser.add_argument("--targets", default=",".join(lora["target_modules"]))
    parser.add_argument("--no-experts", action="store_true", help="no LoRA on the experts")
    parser.add_argument("--batch", type=int, default=training["batch_size"])
    parser.add_argument("--seed", type=int, default=training["seed"])
    parser.add_argument("--engine", default=training["engine"], help="training engine: fast or transformers")
    parser.add_argument("--data", default=data["source"], help="training rows")
    parser.add_argument("--heldout", default=TOOL_SETTINGS["evaluation"]["heldout"], help="held-out rows")
    parser.add_argument("--limit", type=int, default=80, help="held-out requests to measure")
    parser.add_argument("--skip-before", action="store_true", help="do not measure the base model")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu", help="cpu (the tutorial's figures) or cuda (float32 too)")
    parser.add_argument("--show", type=int, default=0, help="print this many generations after training")
    parser.add_argument("--save", help="save the trained adapter to this folder")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)

    import tempfile

    import torch

    import oss_finetune.embedded  # noqa: F401 - registers embedded:tiny-base
    from oss_finetune.core.data import prepare, read_rows
    from oss_finetune.modeling.model import apply_lora, load_model
    from oss_finetune.training.tool_calls import tool_call_rate
    from oss_finetune.training.trainer import Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model({"name_or_path": "embedded:tiny-base", "device": args.device, "dtype": "float32"})
    tokenizer = loaded.tokenizer
    heldout = read_rows(args.heldout, limit=args.limit)
    settings = copy.deepcopy(TOOL_SETTINGS)
    settings["data"].update(loss_mask=args.loss_mask, source=args.data)
    settings["lora"].update(
        r=args.r,
        alpha=args.alpha if args.alpha is not None else 2 * args.r,
        target_modules=args.targets.split(","),
        target_experts=not args.no_experts,
    )
    settings["training"].update(
        max_steps=args.steps,
        learning_rate=args.lr,
        batch_size=args.batch,
        seed=args.seed,
        engine=args.engine,
        save_steps=10_000,
    )
    figures: dict = {
        "machine": f"CPU, {torch.get_num_threads()} torch threads"
        if args.device == "cpu"
        else torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "settings": {k: settings[k] for k in ("data", "lora", "training")},
    }

    def rate(model, use_adapter: bool, show: int = 0):
        started = time.perf_counter()
        result = tool_call_rate(model, tokenizer, heldout, use_adapter=use_adapter)
        print(f"  {result.summary()}", flush=True)
        for judged in result.judged[:show]:
            print(f"  row {judged.row} ({judged.failure or 'ok'}): {tokenizer.decode(judged.generated)!r}", flush=True)
        return {**result.to_dict(), "seconds": time.perf_counter() - started}

    if not args.skip_before:
        print("before (base model):", flush=True)
        figures["before"] = rate(loaded.model, False)
    prepared = prepare(settings["data"], tokenizer)
    model = apply_lora(loaded.model, settings["lora"], seed=settings["training"]["seed"])
    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(model, prepared.examples, dict(settings["training"], output_dir=folder), handle_sigint=False)
        trainer.save_checkpoint = lambda: None  # the adapter stays in memory; the run folder is not measured
        trainer.on_step(lambda m: print(f"  step {m.step}: loss {m.loss:.3f} ({m.elapsed_seconds:.0f} s)", flush=True))
        started = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - started
    losses = [m.loss for m in result.metrics]
    figures["training"] = {
        "status": result.status,
        "steps": result.step,
        "seconds": seconds,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
    }
    print(f"trained {result.step} steps in {seconds:.0f} s, loss {losses[0]:.3f} -> {losses[-1]:.3f}", flush=True)
    print("after (with the adapter):", flush=True)
    figures["after"] = rate(model, True, args.show)
    if args.save:
        model.save_pretrained(args.save)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
