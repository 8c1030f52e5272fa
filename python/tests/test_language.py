"""How the tutorial tells which language a model reasons in (oss_finetune.language).

`identify_language` counts words that belong to one of the five languages only; it answers None
rather than guess. `judge` reads one generation as Harmony and says whether it is well-formed and
what language its analysis is in. `reasoning_language_rate` (tested in test_language_switch.py)
is these two over the held-out questions.
"""

import pytest

from oss_finetune.core.harmony import Conversation, Message, render
from oss_finetune.training.language import (
    LANGUAGES,
    identify_language,
    judge,
    language_scores,
    overlapping_stopwords,
    words,
)


@pytest.mark.parametrize(
    "text,language",
    [
        ("First we multiply both sides, then the answer is 12.", "English"),
        ("Bon, on calcule d'abord les deux côtés, donc la réponse est 12.", "French"),
        ("Bueno, primero resto 3 en ambos lados y luego divido: la respuesta es 4.", "Spanish"),
        ("Gut, zuerst ziehe ich 3 auf beiden Seiten ab, dann ist das Ergebnis 4.", "German"),
        ("Ora, prima sottraggo 3 da entrambi i membri, quindi il risultato è 4.", "Italian"),
        ("First the product, then we add the rest and the answer is 12.", "English"),
        ("D'abord le produit, puis on ajoute le reste : la réponse est donc 12.", "French"),
        ("Primero el producto, luego sumo el resto y la respuesta es 12.", "Spanish"),
        ("Zuerst das Produkt, dann wird der Rest addiert und die Antwort ist 12.", "German"),
        ("Prima il prodotto, poi aggiungo il resto e la risposta è dunque 12.", "Italian"),
    ],
)
def test_a_short_reasoning_step_is_identified(text, language):
    assert identify_language(text) == language


def test_it_says_none_rather_than_guess():
    assert identify_language("12 + 7 = 19") is None  # no words at all
    assert identify_language("the") is None  # one hit is not enough
    # Half French, half English: no language holds 60% of the evidence.
    assert identify_language("les deux côtés donc, then the answer is") is None


@pytest.mark.parametrize("text", ["", "12 × 4 = 48.", "x = 3", "Die réponse est la respuesta e la risposta."])
def test_identifier_abstains_without_clear_evidence(text):
    assert identify_language(text) is None
    assert set(language_scores(text)) == set(LANGUAGES)


def test_apostrophes_split_words_and_case_does_not_matter():
    assert words("D'abord L’utente") == ["d", "abord", "l", "utente"]
    assert language_scores("D'ABORD")["French"] == 1


def test_no_word_is_evidence_for_two_languages():
    assert overlapping_stopwords() == {}
    assert set(LANGUAGES) == {"English", "French", "Spanish", "German", "Italian"}


def generation(tokenizer, text: str) -> list[int]:
    """The tokens a model would generate after `<|start|>assistant`."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_judge_accepts_an_analysis_then_a_final_answer(tokenizer):
    ids = generation(
        tokenizer,
        "<|channel|>analysis<|message|>Bon, on calcule les deux côtés, donc 12."
        "<|end|><|start|>assistant<|channel|>final<|message|>12<|return|>",
    )
    verdict = judge(ids, "French", row=3, tokenizer=tokenizer)
    assert verdict.well_formed and verdict.error is None
    assert verdict.identified == "French" and verdict.in_requested_language
    assert verdict.final == "12" and verdict.row == 3 and verdict.generated_tokens == len(ids)


def test_judge_names_what_is_missing(tokenizer):
    no_final = judge(
        generation(tokenizer, "<|channel|>analysis<|message|>First we add both sides.<|return|>"),
        "French",
        tokenizer=tokenizer,
    )
    assert not no_final.well_formed and no_final.error == "no final message at the end"
    assert no_final.identified == "English" and not no_final.in_requested_language
    cut = judge(generation(tokenizer, "<|channel|>analysis<|message|>Bon, on calcule"), "French", tokenizer=tokenizer)
    assert not cut.well_formed and cut.error == "no <|return|> before the token limit"
    no_analysis = judge(generation(tokenizer, "<|channel|>final<|message|>12<|return|>"), "German", tokenizer=tokenizer)
    assert not no_analysis.well_formed and no_analysis.error == "no analysis message"
    assert no_analysis.analysis is None and not no_analysis.in_requested_language


def _assistant_tokens(tokenizer, analysis, final):
    conv = Conversation(
        [
            Message("user", "q"),
            Message("assistant", analysis, channel="analysis"),
            Message("assistant", final, channel="final"),
        ]
    )
    full = render(conv, mode="train", date="2025-06-28", tokenizer=tokenizer).ids
    prompt = render(conv, mode="prompt", date="2025-06-28", tokenizer=tokenizer).ids
    assert full[: len(prompt)] == prompt
    return full[len(prompt) :]


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
    no_analysis = judge(ids[ids.index(200006) + 1 :], "English", tokenizer=tokenizer)  # the final message alone
    assert not no_analysis.well_formed
    broken = judge([200008, 200008], "English", tokenizer=tokenizer)
    assert not broken.well_formed and broken.analysis is None and broken.error


@pytest.mark.usefixtures("one_torch_thread")
def test_batched_greedy_matches_one_prompt_at_a_time(tokenizer):
    from oss_finetune.modeling.model import PAD_TOKEN_ID, build_embedded_model
    from oss_finetune.training.generation import generate
    from oss_finetune.training.language import _greedy_batch

    model = build_embedded_model()
    prompts = [
        render(Conversation([Message("user", text)]), mode="prompt", date="2025-06-28", tokenizer=tokenizer).ids
        for text in ("Hi", "Compute 12 × 4 + 3 - 9, please.")
    ]
    batched = _greedy_batch(model, prompts, 6, PAD_TOKEN_ID, (200002, 200012))
    single = [generate(model, tokenizer, p, max_new_tokens=6) for p in prompts]
    assert batched == single


@pytest.mark.usefixtures("one_torch_thread")
def test_the_rate_generates_what_transformers_generate_would_and_reports_progress(tokenizer):
    from oss_finetune.core.data import read_rows, to_row
    from oss_finetune.modeling.model import PAD_TOKEN_ID, build_embedded_model
    from oss_finetune.training.language import DEFAULT_BATCH, _greedy_batch, reasoning_language_rate

    assert DEFAULT_BATCH == 64
    model = build_embedded_model()
    rows = read_rows("embedded:multilingual-heldout", limit=7)
    seen: list[tuple[int, int]] = []
    rate = reasoning_language_rate(
        model, tokenizer, rows, "low", max_new_tokens=8, batch_size=3, on_progress=lambda d, t: seen.append((d, t))
    )
    prompts = []
    for index, raw in enumerate(rows):
        row = to_row(raw, index, reasoning_effort="low")
        row.conversation.reasoning_effort = "low"
        prompts.append(render(row.conversation, mode="prompt", date="2025-06-28", tokenizer=tokenizer).ids)
    reference = _greedy_batch(model, prompts, 8, PAD_TOKEN_ID, (200002, 200012))
    assert [j.generated_tokens for j in rate.judged] == [len(r) for r in reference]
    assert [judge(r, j.requested, j.row, tokenizer) for r, j in zip(reference, rate.judged)] == rate.judged
    counts = [d for d, _ in seen]
    assert counts[0] == 0 and counts[-1] == rate.requests == 7
    assert all(b > a for a, b in zip(counts, counts[1:])), counts
    assert {t for _, t in seen} == {7}
    # Each batch of 3 is reported by the time it is done.
    assert {3, 6, 7} <= set(counts)
