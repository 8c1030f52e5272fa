"""``embedded:tiny-base``: the tiny GPT-OSS taught Harmony and English reasoning, built once and cached.

The tutorial's story is "the base model reasons in English; LoRA teaches it to switch". A seeded,
untrained ``embedded:tiny`` cannot tell it: it writes noise in every language. So the project
trains the tiny model once, fully, as a pretrained and post-trained model would have been:

- in Harmony, on the sample's training problems and on fresh problems of the same kinds
  (``reading_rows``), with every row's question and developer instruction (``reasoning language:
  French`` included) but the ENGLISH reasoning of the same problem;
- in plain text, no Harmony, on documents that hold the same line, instruction and question followed
  by the reasoning in the line's language: the base has read French, Spanish, German and Italian
  and knows what the line asks for.

The result writes well-formed Harmony, reasons in English whatever language is asked for, and
ignores the line in Harmony, which is what the tutorial's LoRA run then changes.

The build is deterministic (seeded) and keyed by a hash of its recipe, so a changed recipe gets a
new cache folder instead of a stale model. It lands in ``$OSS_FINETUNE_CACHE/embedded/`` (default
``~/.cache/oss-finetune/embedded/``), written to a temporary folder and renamed into place.

How the build stays cheap on a CPU: the output layer has 201,088 rows, but the sample only ever
uses a few thousand tokens. The build trains a copy of the model whose vocabulary is that set
(``sample_vocabulary``), with one extra logit that stands for all the other tokens at once, then
writes the result back into the full 201,088-row model with the other output rows at zero. A zero
row gives logit 0 on every input, so the compact training loss is exactly the full model's loss,
and the full model never prefers a token it was not trained to produce. The training loop is the
project's own ``Trainer``; only the model it is given is compact.

``python -m oss_finetune.embedded build`` builds it ahead of time (the set-up script does this);
``where`` prints the cache folder; ``measure`` prints the reasoning-language rate of the base.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import random
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from . import EMBEDDED_TINY_BASE

DOCUMENTS_WITH_QUESTION = "reasoning language line + question + train analysis"
DOCUMENTS_HALF_WITH_INSTRUCTIONS = (
    "reasoning language line + analysis; every other one with instruction and question between"
)
DOCUMENTS_WITH_INSTRUCTIONS = "reasoning language line + instruction + question + analysis"

# Everything that decides the base's weights. Changing any value changes the cache folder's name.
BASE_RECIPE: dict[str, Any] = {
    "version": 1,
    # Overrides of model.tiny_config(): the same real architecture.
    "architecture": {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 64},
    "init_seed": 1234,
    # Each training problem appears once per effort, each time with its own random date line, so
    # the base follows the Harmony system message whatever the effort or the date.
    "efforts": ["low", "medium", "high"],
    "date_range": ["2024-01-01", "2026-12-31"],
    "data_seed": 7,
    # Fresh problems per family and language (never a sample problem), read twice: once in Harmony
    # with English reasoning, once as a document in their own language. Without them the base learns
    # the 360 training rows by heart and writes word salad on new problems in any language but English.
    "reading_per_cell": 60,
    # Plain-text documents (no Harmony) of the reasoning of the training and reading problems, in all
    # five languages, trained on every token. Each is laid out as the prompt is: the "reasoning
    # language: X" line, the developer instruction and the question, then the reasoning in X. So the
    # base has read French, Spanish, German and Italian, and knows that the line, however far above,
    # decides the language of the reasoning below it, as a real pretrained model does; in Harmony it
    # was only ever taught to reason in English. docs/embedded-default.md has the runs that chose it.
    "documents": DOCUMENTS_WITH_INSTRUCTIONS,
    "steps": 1000,
    "batch_size": 16,
    "learning_rate": 3e-3,
    "warmup_steps": 10,
    "lr_scheduler": "cosine",
    "weight_decay": 0.0,
    "train_seed": 11,
}

# The tutorial's LoRA run on the embedded base: the notebook's parameters cell and
# tests/test_language_switch.py use these same values. docs/embedded-default.md says how they were chosen.
TUTORIAL_SETTINGS: dict[str, Any] = {
    "model": {"name_or_path": EMBEDDED_TINY_BASE},
    "data": {
        "source": "embedded:multilingual",
        "loss_mask": "assistant",
        "max_seq_length": 320,
        "reasoning_effort": "medium",
    },
    "lora": {
        "r": 32,
        "alpha": 64,
        "dropout": 0,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "target_experts": True,
    },
    "training": {
        "max_steps": 30,
        "batch_size": 16,
        "gradient_accumulation_steps": 1,
        "learning_rate": 5e-3,
        "lr_scheduler": "linear",
        "warmup_steps": 2,
        "weight_decay": 0.0,
        "gradient_checkpointing": False,
        "seed": 3407,
    },
    "evaluation": {
        "heldout": "embedded:multilingual-heldout",
        "effort": "medium",
        "max_new_tokens": 160,
        "date": "2025-06-28",
    },
}


# ---------------------------------------------------------------------------------------------
# English-reasoning rows


def _draw(name: str, per_cell: int, native: set, used: set, *, strict: bool = True) -> list[tuple[tuple, dict, dict]]:
    """Problems drawn as ``sample_data.generate`` draws them: (problem key, row in its language, English-reasoning row).

    Both rows share the question, developer instruction and final answer; the second one's analysis is
    the English reasoning of the same problem. ``used`` holds the keys already taken and grows.
    Without ``strict``, a family cell whose problems run out is left short instead of failing.
    """
    from ..core.sample_data import generate as gen

    pairs = []
    for i, lang, rng, key, render in gen.draw_problems(name, per_cell, used, strict=strict):
        user_lang = lang if lang != "en" and i % gen.NATIVE_QUESTION_EVERY in native else "en"
        # The English trace is drawn from a copy of the generator's stream at this point,
        # so the original row's question, answer and developer line are untouched.
        english = random.Random()
        english.setstate(rng.getstate())
        user, analysis, final = render(rng, lang, user_lang)
        developer = rng.choice(gen.DEVELOPERS)
        _user, english_analysis, _final = render(english, "en", user_lang)
        pairs.append(
            (
                key,
                gen.make_row(lang, developer, user, analysis, final),
                gen.make_row(lang, developer, user, english_analysis, final),
            )
        )
    return pairs


def _sample_splits(used: set) -> dict[str, list[tuple[tuple, dict, dict]]]:
    from ..core.sample_data import generate as gen

    # The held-out split is drawn first in the generator, reserving its problems; replaying both in
    # that order reproduces the training draws too.
    heldout = _draw("heldout", gen.HELDOUT_PER_CELL, {1}, used)
    train = _draw("train", gen.TRAIN_PER_CELL, {gen.NATIVE_QUESTION_EVERY - 1}, used)
    return {"heldout": heldout, "train": train}


def english_reasoning_rows(split: str = "train") -> list[dict]:
    """The sample's rows of ``split`` with each row's analysis replaced by the English reasoning of its problem.

    Question, developer instruction (with its ``reasoning language: X``), final answer and
    ``reasoning_language`` stay as in the sample; only the analysis is English. The problems are
    drawn exactly as ``sample_data.generate`` draws them (same seeds, same order, same held-out
    exclusions), and the English trace comes from the same problem's English templates.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    return [english for _key, _native, english in _sample_splits(set())[split]]


def reading_rows(per_cell: int, *, with_keys: bool = False) -> list[tuple]:
    """Fresh problems for the base only, none of them in the sample: (row in its language, English row) pairs,
    or (problem key, row in its language, English row) with ``with_keys``.

    A pretrained model has read far more text than the fine-tuning set; these problems play that
    part. Their keys skip every held-out and training problem of the sample, so the held-out
    evaluation still asks the base questions it has never seen in any language.
    """
    from ..core.sample_data import generate as gen

    used: set = set()
    _sample_splits(used)
    drawn = _draw("reading", per_cell, {gen.NATIVE_QUESTION_EVERY - 1}, used, strict=False)
    return drawn if with_keys else [(native, english) for _key, native, english in drawn]


# ---------------------------------------------------------------------------------------------
# The vocabulary the base is trained to produce

_SAMPLE_FILES = ("multilingual.jsonl", "multilingual-heldout.jsonl")


def sample_vocabulary(tokenizer=None) -> list[int]:
    """Sorted ids of every token the sample and the prompts around it can contain.

    Every language's analyses and answers are in it, not only English: the base never writes French
    reasoning, but its output rows for French words must be trained (as the wrong answers) so that a
    LoRA run can later make them the right ones. The English reasoning of every problem is in it too,
    and numbers up to 999 and date lines whatever the sample holds.
    """
    from ..core.data import SAMPLE_DIR, read_rows, to_row
    from ..core.harmony import NO_DATE, render_many
    from ..core.tokenizer import FIRST_SPECIAL_ID, SPECIAL_TOKENS, load_tokenizer

    tok = tokenizer if tokenizer is not None else load_tokenizer()
    ids: set[int] = set(SPECIAL_TOKENS.values())
    convs = []
    sources = [read_rows(str(SAMPLE_DIR / name)) for name in _SAMPLE_FILES]
    sources += [english_reasoning_rows(split) for split in ("train", "heldout")]
    for raw_rows in sources:
        for index, raw in enumerate(raw_rows):
            for effort in ("low", "medium", "high"):
                convs.append(to_row(raw, index, reasoning_effort=effort).conversation)
    for rendered in render_many(convs, mode="train", date=NO_DATE, tokenizer=tok):
        ids.update(rendered.ids)
    texts = [str(n) for n in range(1000)] + [f" {n}" for n in range(1000)]
    # The date line of the system message: every day from 2020 to 2035, so today's is covered.
    day, last = dt.date(2020, 1, 1), dt.date(2035, 12, 31)
    while day <= last:
        texts.append(f"Current date: {day.isoformat()}\n")
        day += dt.timedelta(days=1)
    for encoded in tok(texts, add_special_tokens=False)["input_ids"]:
        ids.update(t for t in encoded if t < FIRST_SPECIAL_ID)
    return sorted(ids)


# ---------------------------------------------------------------------------------------------
# Cache


def cache_root() -> Path:
    """``$OSS_FINETUNE_CACHE`` or ``~/.cache/oss-finetune``."""
    configured = os.environ.get("OSS_FINETUNE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "oss-finetune"


def _sample_digest() -> str:
    """A digest of what the base's data is drawn from besides the recipe: the sample files and their generator.

    A change to the templates changes the base's training text, so it must change the cache folder
    too, even when no value of the recipe changed.
    """
    from ..core.data import SAMPLE_DIR

    digest = hashlib.sha256()
    for name in (*_SAMPLE_FILES, "generate.py"):
        digest.update(name.encode())
        digest.update((SAMPLE_DIR / name).read_bytes().replace(b"\r\n", b"\n"))
    return digest.hexdigest()


def recipe_hash(recipe: dict | None = None) -> str:
    recipe = BASE_RECIPE if recipe is None else recipe
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":")) + _sample_digest()
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def base_dir(recipe: dict | None = None) -> Path:
    return cache_root() / "embedded" / f"tiny-base-{recipe_hash(recipe)}"


def is_built(recipe: dict | None = None) -> bool:
    return (base_dir(recipe) / "build.json").is_file()


# ---------------------------------------------------------------------------------------------
# Build


class _OthersHead(torch.nn.Linear):
    """The compact model's output layer: its own rows, plus one logit for all other tokens together.

    In the full model those tokens' rows are zero, so each has logit 0 and together they add
    (count) * e^0 to the softmax's denominator: one extra logit of log(count) adds exactly that.
    """

    def __init__(self, in_features: int, out_features: int, others: int):
        super().__init__(in_features, out_features, bias=False)
        self.others_logit = math.log(others)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = super().forward(hidden)
        extra = torch.full((*logits.shape[:-1], 1), self.others_logit, dtype=logits.dtype, device=logits.device)
        return torch.cat([logits, extra], dim=-1)


def _base_examples(recipe: dict, tokenizer):
    from ..core.data import Example, to_row
    from ..core.harmony import render
    from ..core.tokenizer import MESSAGE

    start, end = (dt.date.fromisoformat(d) for d in recipe["date_range"])
    span = (end - start).days
    rng = random.Random(recipe["data_seed"])
    examples = []
    for index, row in enumerate(english_reasoning_rows("train")):
        for effort in recipe["efforts"]:
            conv = to_row(row, index, reasoning_effort=effort).conversation
            date = (start + dt.timedelta(days=rng.randrange(span + 1))).isoformat()
            rendered = render(conv, mode="train", loss_mask="assistant", date=date, tokenizer=tokenizer)
            examples.append(Example(list(rendered.ids), list(rendered.trained)))
    reading = reading_rows(recipe["reading_per_cell"]) if recipe.get("reading_per_cell") else []
    for index, (_native, row) in enumerate(reading):
        effort = rng.choice(recipe["efforts"])
        conv = to_row(row, index, reasoning_effort=effort).conversation
        date = (start + dt.timedelta(days=rng.randrange(span + 1))).isoformat()
        rendered = render(conv, mode="train", loss_mask="assistant", date=date, tokenizer=tokenizer)
        examples.append(Example(list(rendered.ids), list(rendered.trained)))
    if recipe.get("native_continuations"):
        from ..core.data import SAMPLE_DIR, read_rows

        natives = [r for r in read_rows(str(SAMPLE_DIR / "multilingual.jsonl")) if r["reasoning_language"] != "English"]
        natives += [native for native, _english in reading]
        for index, row in enumerate(natives):
            effort = rng.choice(recipe["efforts"])
            conv = to_row(row, index, reasoning_effort=effort).conversation
            date = (start + dt.timedelta(days=rng.randrange(span + 1))).isoformat()
            rendered = render(conv, mode="train", loss_mask="assistant", date=date, tokenizer=tokenizer)
            prompt = render(conv, mode="prompt", date=date, tokenizer=tokenizer)
            ids, trained = list(rendered.ids), list(rendered.trained)
            # The analysis's first token (the language's marker word, see sample_data/generate.py MARKERS)
            # is not trained: the base learns to carry on a reasoning in the language it started in, but
            # it only ever starts one itself with the English marker. Choosing the language from the
            # developer's "reasoning language" line is what is left for the LoRA.
            first = ids.index(MESSAGE, len(prompt.ids)) + 1
            trained[first] = False
            examples.append(Example(ids, trained))
    if recipe.get("documents"):
        from ..core.data import SAMPLE_DIR, read_rows

        rows = read_rows(str(SAMPLE_DIR / "multilingual.jsonl")) + [native for native, _english in reading]
        if recipe["documents"] == DOCUMENTS_WITH_QUESTION:
            texts = [f"reasoning language: {r['reasoning_language']}\n\n{r['user']}\n\n{r['analysis']}" for r in rows]
        elif recipe["documents"] == DOCUMENTS_WITH_INSTRUCTIONS:
            texts = [
                f"reasoning language: {r['reasoning_language']}\n\n{r['developer']}\n\n{r['user']}\n\n{r['analysis']}"
                for r in rows
            ]
        elif recipe["documents"] == DOCUMENTS_HALF_WITH_INSTRUCTIONS:
            texts = [
                f"reasoning language: {r['reasoning_language']}\n\n{r['developer']}\n\n{r['user']}\n\n{r['analysis']}"
                if i % 2
                else f"reasoning language: {r['reasoning_language']}\n\n{r['analysis']}"
                for i, r in enumerate(rows)
            ]
        else:
            texts = [f"reasoning language: {r['reasoning_language']}\n\n{r['analysis']}" for r in rows]
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            examples.append(Example(list(ids), [True] * len(ids)))
    return examples


# Torch threads for the build unless told otherwise. On the 2-core machines this runs on, a second
# thread saves about a quarter of the build when the machine is quiet (0.19 against 0.26 s a step),
# but makes it several times slower as soon as another job runs (807 s against about 440 s for the
# same build, 2026-11-28): each of the many small operations waits for both threads.
BUILD_THREADS = 1


def build_base(
    recipe: dict | None = None,
    *,
    progress: Callable[[str], Any] | None = print,
    force: bool = False,
    threads: int | None = BUILD_THREADS,
) -> Path:
    """Train the English-reasoning base and write it to its cache folder; returns the folder.

    Another process building the same recipe at the same time is harmless: each writes its own
    temporary folder, and the first rename wins. ``threads`` (None: torch's choice) holds for the
    build only; the caller's thread count is restored after it.
    """
    recipe = dict(BASE_RECIPE if recipe is None else recipe)
    if is_built(recipe) and not force:
        return base_dir(recipe)
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _build(recipe, progress or (lambda _message: None), force)
    finally:
        torch.set_num_threads(previous)


def _build(recipe: dict, say: Callable[[str], Any], force: bool) -> Path:
    from transformers import GptOssForCausalLM

    from ..core.tokenizer import load_tokenizer
    from ..modeling.model import CALL_TOKEN_ID, PAD_TOKEN_ID, RETURN_TOKEN_ID, VOCAB_SIZE, tiny_config
    from ..training.trainer import Trainer

    final = base_dir(recipe)
    started = time.perf_counter()
    tokenizer = load_tokenizer()
    examples = _base_examples(recipe, tokenizer)
    vocab = sorted(set(sample_vocabulary(tokenizer)).union(*(e.input_ids for e in examples)))
    remap = {t: i for i, t in enumerate(vocab)}
    for example in examples:
        example.input_ids = [remap[t] for t in example.input_ids]
    say(
        f"building {EMBEDDED_TINY_BASE} ({recipe_hash(recipe)}): {len(examples)} English-reasoning examples, "
        f"{len(vocab):,} of {VOCAB_SIZE:,} tokens, {recipe['steps']} steps of {recipe['batch_size']} "
        "(once per machine; 3 to 4 minutes on 2 CPU cores)"
    )

    config = tiny_config(**recipe["architecture"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["init_seed"])
        full = GptOssForCausalLM(config)
    compact_config = tiny_config(
        **recipe["architecture"],
        vocab_size=len(vocab),
        pad_token_id=remap[PAD_TOKEN_ID],
        eos_token_id=remap[RETURN_TOKEN_ID],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe["init_seed"])
        compact = GptOssForCausalLM(compact_config)
    index = torch.tensor(vocab, dtype=torch.long)
    state = {k: v for k, v in full.state_dict().items() if k not in ("model.embed_tokens.weight", "lm_head.weight")}
    compact.load_state_dict(state, strict=False)
    head = _OthersHead(config.hidden_size, len(vocab), VOCAB_SIZE - len(vocab))
    with torch.no_grad():
        compact.model.embed_tokens.weight.copy_(full.model.embed_tokens.weight[index])
        head.weight.copy_(full.lm_head.weight[index])
    compact.lm_head = head
    compact.train()

    root = cache_root() / "embedded"
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=root))
    try:
        settings = {
            "max_steps": recipe["steps"],
            "batch_size": recipe["batch_size"],
            "gradient_accumulation_steps": 1,
            "learning_rate": recipe["learning_rate"],
            "lr_scheduler": recipe["lr_scheduler"],
            "warmup_steps": recipe["warmup_steps"],
            "weight_decay": recipe["weight_decay"],
            "gradient_checkpointing": False,
            "logging_steps": 1,
            "save_steps": recipe["steps"] + 1,
            "seed": recipe["train_seed"],
            "output_dir": str(staging / "runs"),
            "optimizer": "adamw_torch",
            # The recipe was tuned on the transformers engine, which 'auto' no longer picks for GPT-OSS; on
            # this full fine-tune of short documents with one thread the fast engine is no faster either.
            "engine": "transformers",
        }
        # A checkpoint would hold the whole compact model and its optimizer state; the cache keeps only
        # the expanded model.
        trainer = Trainer(
            compact, examples, settings, pad_token_id=remap[PAD_TOKEN_ID], handle_sigint=False, checkpoints=False
        )
        every = max(1, recipe["steps"] // 10)
        window: list[float] = []
        averages: list[tuple[float, int]] = []  # (mean loss, steps) of each progress line

        def report(metrics) -> None:
            window.append(metrics.loss)
            if metrics.step % every == 0 or metrics.step == recipe["steps"]:
                averages.append((sum(window) / len(window), len(window)))
                say(
                    f"  step {metrics.step}/{recipe['steps']}: mean loss of the last {len(window)} steps "
                    f"{averages[-1][0]:.3f} ({time.perf_counter() - started:.0f} s)"
                )
                window.clear()

        trainer.on_step(report)
        result = trainer.train()
        if result.status != "completed":
            raise RuntimeError(f"the base build stopped: {result.message}")

        with torch.no_grad():
            embed = full.model.embed_tokens.weight.clone()
            embed[index] = compact.model.embed_tokens.weight
            lm_head = torch.zeros_like(full.lm_head.weight)
            lm_head[index] = compact.lm_head.weight
            body = {
                k: v
                for k, v in compact.state_dict().items()
                if k not in ("model.embed_tokens.weight", "lm_head.weight")
            }
            full.load_state_dict(body, strict=False)
            full.model.embed_tokens.weight.copy_(embed)
            full.lm_head.weight.copy_(lm_head)
        full.generation_config.pad_token_id = PAD_TOKEN_ID
        full.generation_config.eos_token_id = [RETURN_TOKEN_ID, CALL_TOKEN_ID]
        model_dir = staging / "model"
        with _quiet_progress_bars():
            full.save_pretrained(str(model_dir), safe_serialization=True)
        seconds = time.perf_counter() - started
        info = {
            "name": EMBEDDED_TINY_BASE,
            "recipe": recipe,
            "recipe_hash": recipe_hash(recipe),
            "vocabulary_size": len(vocab),
            "examples": len(examples),
            "final_loss": result.metrics[-1].loss if result.metrics else None,
            "build_seconds": round(seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        shutil.rmtree(staging / "runs", ignore_errors=True)
        # build.json is written last: its presence is what marks a finished build.
        (staging / "build.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
        try:
            os.replace(staging, final)
        except OSError:
            if not is_built(recipe):
                if final.exists():  # a broken earlier attempt, or force: replace it
                    stale = root / f".old-{final.name}-{secrets.token_hex(3)}"
                    os.replace(final, stale)
                    shutil.rmtree(stale, ignore_errors=True)
                os.replace(staging, final)
            elif force:
                stale = root / f".old-{final.name}-{secrets.token_hex(3)}"
                os.replace(final, stale)
                os.replace(staging, final)
                shutil.rmtree(stale, ignore_errors=True)
        ending = "no steps"
        if averages:
            mean, steps = averages[-1]
            ending = f"mean loss of the last {steps} steps {mean:.3f}"
        say(f"built {EMBEDDED_TINY_BASE} in {seconds:.0f} s ({ending}): {final}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


@contextlib.contextmanager
def _quiet_progress_bars() -> Iterator[None]:
    """transformers' bars while a few MiB are read or written locally: over in a blink, and in a notebook
    without ipywidgets they are red stderr. Whatever was switched on before is switched on again."""
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    transformers_on = transformers_logging.is_progress_bar_enabled()
    hub_on = not hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if transformers_on:
            transformers_logging.enable_progress_bar()
        if not hub_on:
            hub_utils.disable_progress_bars()


def load_base(
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    attn_implementation: str = "eager",
    progress: Callable[[str], Any] | None = print,
    recipe: dict | None = None,
):
    """The English-reasoning base from the cache, built first when it is missing."""
    from transformers import GptOssForCausalLM

    from ..modeling.model import CALL_TOKEN_ID, PAD_TOKEN_ID, RETURN_TOKEN_ID

    folder = build_base(recipe, progress=progress)
    with _quiet_progress_bars():
        model = GptOssForCausalLM.from_pretrained(
            str(folder / "model"), dtype=dtype, attn_implementation=attn_implementation
        )
    model.generation_config.pad_token_id = PAD_TOKEN_ID
    model.generation_config.eos_token_id = [RETURN_TOKEN_ID, CALL_TOKEN_ID]
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oss_finetune.embedded",
        description="Build and inspect the embedded English-reasoning base model.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help=f"build {EMBEDDED_TINY_BASE} into the cache (no-op when present)")
    build.add_argument("--force", action="store_true", help="rebuild even when the cache has it")
    build.add_argument("--threads", type=int, default=BUILD_THREADS, help=f"torch threads (default {BUILD_THREADS})")
    sub.add_parser("where", help="print the cache folder of the current recipe, and whether it is built")
    measure = sub.add_parser("measure", help="the base's reasoning-language rate on the held-out problems")
    measure.add_argument("--limit", type=int, default=None, help="at most this many held-out rows")
    measure.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    if args.command == "where":
        print(f"{base_dir()} ({'built' if is_built() else 'not built'})")
        return 0
    if args.command == "build":
        build_base(force=args.force, threads=args.threads)
        return 0
    from ..core.data import read_rows
    from ..core.tokenizer import load_tokenizer
    from ..training.language import reasoning_language_rate

    evaluation = TUTORIAL_SETTINGS["evaluation"]
    rows = read_rows(evaluation["heldout"], limit=args.limit)
    rate = reasoning_language_rate(
        load_base(),
        load_tokenizer(),
        rows,
        evaluation["effort"],
        max_new_tokens=evaluation["max_new_tokens"],
        date=evaluation["date"],
    )
    print(rate.summary())
    return 0
