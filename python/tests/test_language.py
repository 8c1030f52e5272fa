"""How the tutorial tells which language a model reasons in (oss_finetune.language).

`identify_language` counts words that belong to one of the five languages only; it answers None
rather than guess. `judge` reads one generation as Harmony and says whether it is well-formed and
what language its analysis is in. `reasoning_language_rate` (tested in test_language_switch.py)
is these two over the held-out questions.
"""

import pytest

from oss_finetune.language import LANGUAGES, identify_language, judge, language_scores, overlapping_stopwords, words


@pytest.mark.parametrize("text,language", [
    ("First we multiply both sides, then the answer is 12.", "English"),
    ("Bon, on calcule d'abord les deux côtés, donc la réponse est 12.", "French"),
    ("Bueno, primero resto 3 en ambos lados y luego divido: la respuesta es 4.", "Spanish"),
    ("Gut, zuerst ziehe ich 3 auf beiden Seiten ab, dann ist das Ergebnis 4.", "German"),
    ("Ora, prima sottraggo 3 da entrambi i membri, quindi il risultato è 4.", "Italian"),
])
def test_a_short_reasoning_step_is_identified(text, language):
    assert identify_language(text) == language


def test_it_says_none_rather_than_guess():
    assert identify_language("12 + 7 = 19") is None  # no words at all
    assert identify_language("the") is None  # one hit is not enough
    # Half French, half English: no language holds 60% of the evidence.
    assert identify_language("les deux côtés donc, then the answer is") is None


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
    ids = generation(tokenizer, "<|channel|>analysis<|message|>Bon, on calcule les deux côtés, donc 12."
                                "<|end|><|start|>assistant<|channel|>final<|message|>12<|return|>")
    verdict = judge(ids, "French", row=3, tokenizer=tokenizer)
    assert verdict.well_formed and verdict.error is None
    assert verdict.identified == "French" and verdict.in_requested_language
    assert verdict.final == "12" and verdict.row == 3 and verdict.generated_tokens == len(ids)


def test_judge_names_what_is_missing(tokenizer):
    no_final = judge(generation(tokenizer, "<|channel|>analysis<|message|>First we add both sides.<|return|>"),
                     "French", tokenizer=tokenizer)
    assert not no_final.well_formed and no_final.error == "no final message at the end"
    assert no_final.identified == "English" and not no_final.in_requested_language
    cut = judge(generation(tokenizer, "<|channel|>analysis<|message|>Bon, on calcule"), "French", tokenizer=tokenizer)
    assert not cut.well_formed and cut.error == "no <|return|> before the token limit"
    no_analysis = judge(generation(tokenizer, "<|channel|>final<|message|>12<|return|>"), "German", tokenizer=tokenizer)
    assert not no_analysis.well_formed and no_analysis.error == "no analysis message"
    assert no_analysis.analysis is None and not no_analysis.in_requested_language
