"""The tutorial's evaluation on the CPU: the embedded default, 60 held-out questions, 160 new tokens.

    python bench/cpu_eval.py [--limit 60] [--threads N] [--json out.json]

Side by side in one process, the same questions and model (embedded:tiny-base with a fresh LoRA
adapter, so before and after both run through the peft wrapper as in the tutorial):

- transformers' ``generate`` in left-padded batches of 16 (the path before ``modeling.decoding``),
- ``modeling.decoding`` in one batch of 64 (today's path, what ``%oss_finetune eval`` runs).

Both must judge every question the same way (greedy decoding in float32), so the bench also checks
that the two rates are equal and says so. Figures: wall seconds of each ``reasoning_language_rate``
call, model loaded and warm.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", help="write the figures to this file too")
    args = parser.parse_args(argv)

    import torch

    import oss_finetune.embedded  # noqa: F401 - registers embedded:tiny-base
    from oss_finetune.core.data import read_rows
    from oss_finetune.modeling import engine
    from oss_finetune.modeling.model import apply_lora, load_model
    from oss_finetune.training.language import reasoning_language_rate

    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model({"name_or_path": "embedded:tiny-base"})
    model = apply_lora(loaded.model, {"r": 8, "alpha": 16}, seed=0)
    rows = read_rows("embedded:multilingual-heldout", limit=args.limit)
    figures: dict = {
        "machine": f"CPU, {torch.get_num_threads()} torch threads",
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).date().isoformat(),
        "questions": len(rows),
        "new_tokens": 160,
        "cases": [],
    }

    def timed(label: str, batch: int, decoding: bool):
        supports = engine.supports
        if not decoding:
            engine.supports = lambda _model: False  # type: ignore[assignment]
        try:
            started = time.perf_counter()
            rate = reasoning_language_rate(model, loaded.tokenizer, rows, use_adapter=False, batch_size=batch)
            seconds = time.perf_counter() - started
        finally:
            engine.supports = supports  # type: ignore[assignment]
        figures["cases"].append({"case": label, "batch": batch, "seconds": round(seconds, 2), **rate.to_dict()})
        print(f"{label:52s} {seconds:7.1f} s  ({rate.summary()})", flush=True)
        return rate, seconds

    reasoning_language_rate(model, loaded.tokenizer, rows[:2], use_adapter=False)  # warm-up
    old, old_seconds = timed("transformers' generate, batches of 16", 16, decoding=False)
    new, new_seconds = timed("modeling.decoding, one batch of 64", 64, decoding=True)
    judged = [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in (old, new)]
    same = judged[0] == judged[1]
    figures["same_judgement"] = same
    figures["speed_up"] = round(old_seconds / new_seconds, 2)
    print(f"speed-up {old_seconds / new_seconds:.1f} x; the same judgement of every question: {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
