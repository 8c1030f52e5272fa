"""Rendering speed: our Harmony renderer against the Hugging Face chat template.

Synthesizes Multilingual-Thinking-like rows from the 4 real rows (each copy gets its number in the
user turn, so no two rows are alike), then times:
  - ours, `render_many` in batches of 256 (what `data.prepare` does), with per-token labels;
  - ours, `render` one row at a time;
  - the HF template (TRL's gpt-oss template) through `apply_chat_template(tokenize=True)`,
    one row at a time and as one batched call.
Both produce the same ids (checked before timing, up to the known blank line after the
instructions; see docs/harmony.md).

    python bench/render_speed.py [--rows 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from oss_finetune.core.data import to_row
from oss_finetune.core.harmony import render, render_many
from oss_finetune.core.tokenizer import load_tokenizer

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "multilingual-thinking.sample-4rows.json"
DATE = "2025-06-28"


def synthesize(n: int) -> list[dict]:
    base = json.loads(SAMPLE.read_text())
    rows = []
    for i in range(n):
        row = json.loads(json.dumps(base[i % len(base)]))
        row["messages"][1]["content"] = f"[{i}] " + row["messages"][1]["content"]
        rows.append(row)
    return rows


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import trl

    template = (Path(trl.__file__).parent / "chat_templates" / "gptoss.jinja").read_text()
    template = template.replace('strftime_now("%Y-%m-%d")', f'"{DATE}"')
    tok = load_tokenizer()
    rows = synthesize(args.rows)
    convs = [to_row(r, i).conversation for i, r in enumerate(rows)]
    chats = [r["messages"] for r in rows]

    def hf_one():
        return [
            tok.apply_chat_template(c, chat_template=template, tokenize=True, return_dict=True)["input_ids"]
            for c in chats
        ]

    def hf_batch():
        return tok.apply_chat_template(chats, chat_template=template, tokenize=True, return_dict=True)["input_ids"]

    def ours_batch():
        out = []
        for s in range(0, len(convs), 256):
            out.extend(render_many(convs[s : s + 256], date=DATE, tokenizer=tok))
        return out

    def ours_one():
        return [render(c, date=DATE, tokenizer=tok) for c in convs]

    # Same work: the ids agree once TRL's extra blank line after the instructions is accounted for.
    ours_text = ours_batch()[0].decoded()
    hf_text = tok.decode(hf_one()[0])
    assert hf_text == ours_text.replace("<|end|><|start|>user", "\n\n<|end|><|start|>user", 1), "renders differ"

    timings = {
        "ours, render_many (batches of 256)": best_of(args.repeat, ours_batch),
        "ours, render one row at a time": best_of(args.repeat, ours_one),
        "HF template, apply_chat_template per row": best_of(args.repeat, hf_one),
        "HF template, apply_chat_template batched": best_of(args.repeat, hf_batch),
    }
    tokens = sum(len(r.ids) for r in ours_batch())
    print(f"{args.rows} rows, {tokens} tokens, best of {args.repeat}; {platform.processor() or platform.machine()}")
    for name, secs in timings.items():
        print(f"  {name:45s} {args.rows / secs:9.0f} rows/s  ({secs * 1000:.0f} ms)")
    hf_best = min(
        timings["HF template, apply_chat_template per row"], timings["HF template, apply_chat_template batched"]
    )
    print(
        f"  speed-up, ours batched vs the faster HF way: x{hf_best / timings['ours, render_many (batches of 256)']:.1f}"
    )
    print(
        f"  speed-up, ours per row vs HF per row:        x{timings['HF template, apply_chat_template per row'] / timings['ours, render one row at a time']:.1f}"
    )


if __name__ == "__main__":
    main()
