"""The embedded base's recipe pieces and the language identifier: English-reasoning rows drawn from the
same problems as the sample, the compact-vocabulary loss, the cache location, and the judge of a generation."""

import json
import math

import pytest
import torch

from oss_finetune import embedded
from oss_finetune.data import SAMPLE_DIR
from oss_finetune.harmony import Conversation, Message, render
from oss_finetune.language import (
    LANGUAGES,
    identify_language,
    judge,
    language_scores,
    overlapping_stopwords,
)


def _sample(name):
    return [json.loads(line) for line in (SAMPLE_DIR / name).read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("split, name", [("train", "multilingual.jsonl"), ("heldout", "multilingual-heldout.jsonl")])
def test_english_reasoning_rows_keep_question_instruction_and_answer(split, name):
    english = embedded.english_reasoning_rows(split)
    original = _sample(name)
    assert len(english) == len(original)
    changed = 0
    for ours, theirs in zip(english, original):
        for key in ("reasoning_language", "developer", "user", "final"):
            assert ours[key] == theirs[key]
        assert ours["messages"][0]["content"].startswith(f"reasoning language: {theirs['reasoning_language']}\n\n")
        assert identify_language(ours["analysis"]) == "English"
        if theirs["reasoning_language"] == "English":
            assert ours["analysis"] == theirs["analysis"]
        else:
            changed += 1
            assert ours["analysis"] != theirs["analysis"]
    assert changed == len(original) * 4 // 5


def test_english_reasoning_is_the_same_problem():
    # The conclusion restates the answer, so the same numbers close both traces.
    english = embedded.english_reasoning_rows("train")
    original = _sample("multilingual.jsonl")
    row = next(i for i, r in enumerate(original) if r["reasoning_language"] == "German" and "x =" in r["final"])
    answer = original[row]["final"].split("x = ")[-1].rstrip(".")
    assert original[row]["analysis"].rstrip(".").endswith(answer)
    assert english[row]["analysis"].rstrip(".").endswith(answer)


def test_reading_problems_are_fresh_and_balanced():
    from oss_finetune.sample_data import generate as gen

    sample_keys = {key for _rows, keys in gen.generate_with_keys().values() for key in keys}
    reading = embedded.reading_rows(4, with_keys=True)
    keys = [key for key, _native, _english in reading]
    assert len(set(keys)) == len(keys) == 4 * len(gen.FAMILIES) * len(gen.LANGS)
    assert not sample_keys & set(keys)
    for _key, native, english in reading:
        assert identify_language(native["analysis"]) == native["reasoning_language"]
        assert identify_language(english["analysis"]) == "English"
        for column in ("reasoning_language", "developer", "user", "final"):
            assert native[column] == english[column]


def test_base_documents_read_like_the_prompt_in_plain_text(tokenizer):
    """The documents of the recipe: line, instruction, question, then the reasoning in the line's language;
    no Harmony token, every token trained. The Harmony examples reason in English only."""
    from oss_finetune.tokenizer import FIRST_SPECIAL_ID

    recipe = dict(embedded.BASE_RECIPE, reading_per_cell=1)
    examples = embedded._base_examples(recipe, tokenizer)
    documents = [e for e in examples if all(e.trained) and max(e.input_ids) < FIRST_SPECIAL_ID]
    harmony = [e for e in examples if not all(e.trained)]
    assert len(documents) + len(harmony) == len(examples)
    assert len(documents) == 360 + 30
    seen = set()
    for example in documents:
        text = tokenizer.decode(example.input_ids)
        head, developer, question, reasoning = text.split("\n\n", 3)
        language = head.removeprefix("reasoning language: ")
        assert identify_language(reasoning) == language and developer and question
        seen.add(language)
    assert seen == set(LANGUAGES)
    for example in harmony[::25]:
        trained = [t for t, on in zip(example.input_ids, example.trained) if on]
        analysis = tokenizer.decode(trained).split("<|message|>")[1].split("<|end|>")[0]
        assert identify_language(analysis) == "English"


def test_cache_folder_changes_with_the_sample(monkeypatch, tmp_path):
    import shutil

    from oss_finetune import data

    before = embedded.recipe_hash()
    copy = tmp_path / "sample_data"
    shutil.copytree(data.SAMPLE_DIR, copy)
    monkeypatch.setattr(data, "SAMPLE_DIR", copy)
    assert embedded.recipe_hash() == before
    with (copy / "multilingual.jsonl").open("a", encoding="utf-8") as handle:
        handle.write("\n")
    assert embedded.recipe_hash() != before


def test_cache_folder_follows_the_environment_and_the_recipe(monkeypatch, tmp_path):
    monkeypatch.setenv("OSS_FINETUNE_CACHE", str(tmp_path))
    folder = embedded.base_dir()
    assert folder.parent == tmp_path / "embedded"
    assert folder.name == f"tiny-base-{embedded.recipe_hash()}"
    other = dict(embedded.BASE_RECIPE, steps=embedded.BASE_RECIPE["steps"] + 1)
    assert embedded.base_dir(other) != folder
    assert not embedded.is_built()


def test_compact_head_gives_the_full_models_loss():
    """Training on the compact vocabulary with one 'all others' logit equals the full softmax with zero rows."""
    torch.manual_seed(0)
    full_vocab, hidden = 50, 8
    kept = torch.tensor([1, 4, 7, 9, 20, 33])
    weight = torch.randn(len(kept), hidden)
    full = torch.zeros(full_vocab, hidden)
    full[kept] = weight
    states = torch.randn(5, hidden)
    targets_compact = torch.tensor([0, 3, 5, 2, 1])
    head = embedded._OthersHead(hidden, len(kept), full_vocab - len(kept))
    with torch.no_grad():
        head.weight.copy_(weight)
    with torch.no_grad():
        compact_loss = torch.nn.functional.cross_entropy(head(states), targets_compact)
    full_loss = torch.nn.functional.cross_entropy(states @ full.T, kept[targets_compact])
    assert math.isclose(compact_loss.item(), full_loss.item(), rel_tol=1e-5)


def test_tutorial_settings_are_valid_config_sections():
    from oss_finetune.model import config_section

    for section in ("model", "data", "lora", "training"):
        config_section(section, embedded.TUTORIAL_SETTINGS[section])
    assert embedded.TUTORIAL_SETTINGS["model"]["name_or_path"] == embedded.EMBEDDED_TINY_BASE


# -- the language identifier --------------------------------------------------------------------

def test_stopword_lists_do_not_overlap():
    assert overlapping_stopwords() == {}


@pytest.mark.parametrize("name", ["multilingual.jsonl", "multilingual-heldout.jsonl"])
def test_identifier_names_every_sample_analysis(name):
    rows = _sample(name)
    wrong = [(r["reasoning_language"], identify_language(r["analysis"])) for r in rows
             if identify_language(r["analysis"]) != r["reasoning_language"]]
    assert wrong == []


@pytest.mark.parametrize("text, language", [
    ("First the product, then we add the rest and the answer is 12.", "English"),
    ("D'abord le produit, puis on ajoute le reste : la réponse est donc 12.", "French"),
    ("Primero el producto, luego sumo el resto y la respuesta es 12.", "Spanish"),
    ("Zuerst das Produkt, dann wird der Rest addiert und die Antwort ist 12.", "German"),
    ("Prima il prodotto, poi aggiungo il resto e la risposta è dunque 12.", "Italian"),
])
def test_identifier_on_handwritten_sentences(text, language):
    assert identify_language(text) == language


@pytest.mark.parametrize("text", ["", "12 × 4 = 48.", "x = 3", "Die réponse est la respuesta e la risposta."])
def test_identifier_abstains_without_clear_evidence(text):
    assert identify_language(text) is None
    assert set(language_scores(text)) == set(LANGUAGES)


# -- judging a generation -----------------------------------------------------------------------

def _assistant_tokens(tokenizer, analysis, final):
    conv = Conversation([Message("user", "q"), Message("assistant", analysis, channel="analysis"),
                         Message("assistant", final, channel="final")])
    full = render(conv, mode="train", date="2025-06-28", tokenizer=tokenizer).ids
    prompt = render(conv, mode="prompt", date="2025-06-28", tokenizer=tokenizer).ids
    assert full[:len(prompt)] == prompt
    return full[len(prompt):]


def test_judge_accepts_analysis_then_final(tokenizer):
    ids = _assistant_tokens(tokenizer, "D'abord le produit, puis on ajoute le reste.", "12")
    verdict = judge(ids, "French", tokenizer=tokenizer)
    assert verdict.well_formed and verdict.identified == "French" and verdict.in_requested_language
    assert verdict.final == "12"
    assert not judge(ids, "German", tokenizer=tokenizer).in_requested_language


def test_judge_rejects_cut_off_and_broken_streams(tokenizer):
    ids = _assistant_tokens(tokenizer, "First the product, then we add the rest.", "12")
    cut = judge(ids[:-3], "English", tokenizer=tokenizer)
    assert not cut.well_formed and "return" in cut.error
    assert cut.identified == "English"  # the analysis itself was complete
    no_analysis = judge(ids[ids.index(200006) + 1:], "English", tokenizer=tokenizer)  # the final message alone
    assert not no_analysis.well_formed
    broken = judge([200008, 200008], "English", tokenizer=tokenizer)
    assert not broken.well_formed and broken.analysis is None and broken.error


def test_batched_greedy_matches_one_prompt_at_a_time(tokenizer):
    from oss_finetune.language import _greedy_batch
    from oss_finetune.model import PAD_TOKEN_ID, build_embedded_model
    from oss_finetune.train import generate

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_embedded_model()
        prompts = [render(Conversation([Message("user", text)]), mode="prompt", date="2025-06-28",
                          tokenizer=tokenizer).ids for text in ("Hi", "Compute 12 × 4 + 3 - 9, please.")]
        batched = _greedy_batch(model, prompts, 6, PAD_TOKEN_ID, (200002, 200012))
        single = [generate(model, tokenizer, p, max_new_tokens=6) for p in prompts]
    finally:
        torch.set_num_threads(before)
    assert batched == single


def test_the_build_runs_on_its_own_thread_count_and_gives_the_callers_back(monkeypatch, tmp_path):
    monkeypatch.setenv("OSS_FINETUNE_CACHE", str(tmp_path))
    seen = []
    monkeypatch.setattr(embedded, "_build", lambda recipe, say, force: seen.append(torch.get_num_threads()) or tmp_path)
    before = torch.get_num_threads()
    embedded.build_base(progress=None)
    embedded.build_base(progress=None, threads=None)
    assert seen == [embedded.BUILD_THREADS, before]
    assert torch.get_num_threads() == before
