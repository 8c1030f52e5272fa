"""The embedded base's recipe pieces and the language identifier: English-reasoning rows drawn from the
same problems as the sample, the compact-vocabulary loss, the cache location, and the judge of a generation."""

import json
import math

import pytest
import torch

from oss_finetune.core.data import SAMPLE_DIR
from oss_finetune.embedded import base as embedded
from oss_finetune.training.language import LANGUAGES, identify_language


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
    from oss_finetune.core.sample_data import generate as gen

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
    from oss_finetune.core.tokenizer import FIRST_SPECIAL_ID

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

    from oss_finetune.core import data

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
    from oss_finetune.modeling.model import config_section

    for section in ("model", "data", "lora", "training"):
        config_section(section, embedded.TUTORIAL_SETTINGS[section])
    assert embedded.TUTORIAL_SETTINGS["model"]["name_or_path"] == embedded.EMBEDDED_TINY_BASE


# -- the sample as the language identifier reads it ----------------------------------------------


@pytest.mark.parametrize("name", ["multilingual.jsonl", "multilingual-heldout.jsonl"])
def test_identifier_names_every_sample_analysis(name):
    rows = _sample(name)
    wrong = [
        (r["reasoning_language"], identify_language(r["analysis"]))
        for r in rows
        if identify_language(r["analysis"]) != r["reasoning_language"]
    ]
    assert wrong == []


def test_the_build_runs_on_its_own_thread_count_and_gives_the_callers_back(monkeypatch, tmp_path):
    monkeypatch.setenv("OSS_FINETUNE_CACHE", str(tmp_path))
    seen = []
    monkeypatch.setattr(embedded, "_build", lambda recipe, say, force: seen.append(torch.get_num_threads()) or tmp_path)
    before = torch.get_num_threads()
    embedded.build_base(progress=None)
    embedded.build_base(progress=None, threads=None)
    assert seen == [embedded.BUILD_THREADS, before]
    assert torch.get_num_threads() == before


def test_a_build_says_up_front_that_it_runs_once_and_ends_on_the_loss_its_last_progress_line_gave(
    monkeypatch, tmp_path
):
    from oss_finetune.training.trainer import Trainer

    monkeypatch.setenv("OSS_FINETUNE_CACHE", str(tmp_path))
    engines = []
    choose = Trainer._choose_engine
    monkeypatch.setattr(
        Trainer, "_choose_engine", lambda self, device: engines.append(choose(self, device)) or engines[-1]
    )
    recipe = dict(embedded.BASE_RECIPE, reading_per_cell=1, steps=6, batch_size=2)
    lines: list[str] = []
    folder = embedded.build_base(recipe, progress=lines.append, threads=1)
    assert engines == ["transformers"]  # the engine the recipe was tuned on, whatever 'auto' picks today
    assert "once per machine" in lines[0]
    progress = [line for line in lines if line.lstrip().startswith("step ")]
    assert [line.split()[1] for line in progress] == ["1/6:", "2/6:", "3/6:", "4/6:", "5/6:", "6/6:"]
    last_mean = progress[-1].split("steps ")[1].split()[0]
    assert lines[-1].startswith("built ") and f"mean loss of the last 1 steps {last_mean}" in lines[-1]
    assert str(folder) in lines[-1] and embedded.is_built(recipe)
