"""The project's own multilingual reasoning sample: reproducible, well-formed and correct."""

import collections
import datetime as dt
import json
import re
from fractions import Fraction
from pathlib import Path

import pytest

from oss_finetune.core.sample_data import HELDOUT_PATH, TRAIN_PATH
from oss_finetune.core.sample_data import generate as gen

COLUMNS = ["reasoning_language", "developer", "user", "analysis", "final", "messages"]
LANGUAGES = ["English", "French", "Spanish", "German", "Italian"]


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def train():
    return load(TRAIN_PATH)


@pytest.fixture(scope="module")
def heldout():
    return load(HELDOUT_PATH)


def family_of(index: int) -> str:
    # The generator writes rows in blocks of one family across all languages.
    return gen.FAMILIES[(index // len(gen.LANGS)) % len(gen.FAMILIES)]


def with_family(rows, family):
    return [row for i, row in enumerate(rows) if family_of(i) == family]


def test_committed_files_equal_a_fresh_generation():
    train_rows, heldout_rows = gen.generate()
    assert TRAIN_PATH.read_text(encoding="utf-8") == gen.to_jsonl(train_rows)
    assert HELDOUT_PATH.read_text(encoding="utf-8") == gen.to_jsonl(heldout_rows)


def test_generation_is_stable_across_runs(tmp_path):
    gen.main(["--out-dir", str(tmp_path)])
    gen.main(["--out-dir", str(tmp_path / "again")])
    for name in (TRAIN_PATH.name, HELDOUT_PATH.name):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_files_are_small():
    assert TRAIN_PATH.stat().st_size < 600_000
    assert HELDOUT_PATH.stat().st_size < 200_000


def test_row_and_language_counts(train, heldout):
    assert len(train) >= 300 and len(heldout) >= 40
    for rows in (train, heldout):
        counts = collections.Counter(row["reasoning_language"] for row in rows)
        assert sorted(counts) == sorted(LANGUAGES)
        assert len(set(counts.values())) == 1, counts


def test_each_language_and_family_is_covered(train, heldout):
    for rows in (train, heldout):
        cells = collections.Counter((family_of(i), row["reasoning_language"]) for i, row in enumerate(rows))
        assert len(cells) == len(gen.FAMILIES) * len(LANGUAGES)
        assert len(set(cells.values())) == 1


def test_columns_and_messages_mirror_them(train, heldout):
    for row in train + heldout:
        assert list(row) == COLUMNS
        assert all(isinstance(row[c], str) and row[c].strip() for c in COLUMNS[:-1])
        assert row["messages"] == [
            {
                "role": "system",
                "content": f"reasoning language: {row['reasoning_language']}\n\n{row['developer']}",
                "thinking": None,
            },
            {"role": "user", "content": row["user"], "thinking": None},
            {"role": "assistant", "content": row["final"], "thinking": row["analysis"]},
        ]


def test_lengths_suit_a_tiny_model(train, heldout):
    for row in train + heldout:
        assert 20 <= len(row["analysis"].split()) <= 90, row["analysis"]
        assert len(row["final"].split()) < 20, row["final"]


def test_no_heldout_question_is_in_training(train, heldout):
    seen = {row["user"] for row in train}
    assert not [row["user"] for row in heldout if row["user"] in seen]
    # The same problem asked in other words or another language must not leak either; the
    # generator keys each problem by its family, kind and numbers (or names), whatever the language.
    splits = gen.generate_with_keys()
    train_keys, heldout_keys = splits["train"][1], splits["heldout"][1]
    assert len(train_keys) == len(train) and len(heldout_keys) == len(heldout)
    assert not set(train_keys) & set(heldout_keys)
    assert len(set(train_keys)) == len(train_keys)


def test_training_problems_are_distinct(train):
    assert len({row["user"] for row in train}) == len(train)


ENGLISH_QUESTION = re.compile(r"\b(What|How|Who|Which|Solve|Compute|Calculate|Evaluate|Convert|Find|Today|If today)\b")


def test_questions_are_mostly_english_sometimes_native(train, heldout):
    for rows in (train, heldout):
        assert all(ENGLISH_QUESTION.search(r["user"]) for r in rows if r["reasoning_language"] == "English")
        other = [r for r in rows if r["reasoning_language"] != "English"]
        native = [r for r in other if not ENGLISH_QUESTION.search(r["user"])]
        assert 0.25 <= len(native) / len(other) <= 0.5


def test_non_english_reasoning_has_no_english_glue_words(train, heldout):
    for row in train + heldout:
        if row["reasoning_language"] != "English":
            assert not re.search(r"\b(the|and|is|we|so|then)\b", row["analysis"]), row["analysis"]


def test_arithmetic_answers_are_right(train, heldout):
    checked = 0
    for row in with_family(train + heldout, "arithmetic"):
        if "×" in row["user"]:
            expr = re.search(r"\(?\d[\d ×+\-()]*\d", row["user"]).group()
            value = eval(expr.replace("×", "*"), {"__builtins__": {}})  # digits and operators only
        else:
            n, k, sold, broken = map(int, re.findall(r"\d+", row["user"]))
            value = n * k - sold - broken
        assert re.search(rf"(?<![\d.,]){value}(?![\d,.]\d)", row["final"]), (row["user"], row["final"])
        assert row["analysis"].rstrip(".").split()[-1].startswith(str(value)) or str(value) in row["analysis"]
        checked += 1
    assert checked >= 60


def _solve_linear(equation: str) -> Fraction:
    left, right = equation.split("=")

    def side(text, x):
        text = re.sub(r"(\d)x", r"\1*x", text.replace(" ", ""))
        text = re.sub(r"(\d)\(", r"\1*(", text)
        return eval(text, {"__builtins__": {}}, {"x": x})

    f0 = side(left, 0) - side(right, 0)
    f1 = side(left, 1) - side(right, 1)
    return Fraction(-f0, f1 - f0)


def test_equation_answers_are_right(train, heldout):
    rows = with_family(train + heldout, "equations")
    for row in rows:
        equation = re.search(r"[\dx(][\dx ()+\-]*=[\dx ()+\-]*\d", row["user"]).group()
        x = _solve_linear(equation)
        assert x.denominator == 1
        assert f"x = {x.numerator}" in row["final"], (equation, row["final"])
        assert row["analysis"].endswith(f"x = {x.numerator}.")
    assert len(rows) >= 60


def test_weekday_answers_are_right(train, heldout):
    names = gen.WEEKDAYS["en"]
    checked = 0
    for row in with_family(train + heldout, "dates"):
        found = re.search(r"Today is (\w+)\. .* (?:in (\d+) days|(\d+) days ago)", row["user"]) or re.search(
            r"If today is (\w+), which weekday (?:is it (\d+) days from now|was it (\d+) days ago)", row["user"]
        )
        if not found:
            continue
        start = names.index(found.group(1))
        shift = int(found.group(2)) if found.group(2) else -int(found.group(3))
        expected = names[(start + shift) % 7]
        assert expected in row["final"], (row["user"], row["final"])
        lang = [k for k, v in gen.LANG_NAMES.items() if v == row["reasoning_language"]][0]
        assert row["analysis"].rstrip(".").endswith(gen.WEEKDAYS[lang][(start + shift) % 7])
        checked += 1
    assert checked >= 10


def test_days_between_answers_are_right(train, heldout):
    checked = 0
    for row in with_family(train + heldout, "dates"):
        found = re.search(r"(?:from|between) (\w+ \d+) (?:to|and) (\w+ \d+), (\d{4})", row["user"])
        if not found:
            continue
        year = found.group(3)
        d1 = dt.datetime.strptime(f"{found.group(1)} {year}", "%B %d %Y")
        d2 = dt.datetime.strptime(f"{found.group(2)} {year}", "%B %d %Y")
        assert re.search(rf"\b{(d2 - d1).days} days\b", row["final"]), (row["user"], row["final"])
        checked += 1
    assert checked >= 5


def test_percentage_of_answers_are_right(train, heldout):
    checked = 0
    for row in with_family(train + heldout, "percentages"):
        found = re.search(r"(\d+) ?(?:%|percent) (?:of|de|von|di) (\d+)", row["user"])
        if not found:
            continue
        p, base = int(found.group(1)), int(found.group(2))
        assert str(p * base // 100) in row["final"]
        checked += 1
    assert checked >= 10


def test_numbers_follow_the_reasoning_language():
    # A decimal comma in the reasoning language, a decimal point in English answers.
    assert gen.num(Fraction(3, 4), "fr") == "0,75"
    assert gen.num(Fraction(3, 4), "en") == "0.75"
    assert gen.num(Fraction(-6), "de") == "-6"
    assert gen.pct(75, "fr") == "75 %" and gen.pct(75, "it") == "75%"
    with pytest.raises(ValueError):
        gen.num(Fraction(1, 3), "en")


@pytest.mark.slow  # importing transformers and loading the 200k-entry vocabulary
def test_rows_fit_in_300_tokens(train, heldout):
    transformers = pytest.importorskip("transformers")
    folder = Path(gen.__file__).resolve().parents[1] / "assets" / "tokenizer"
    if not (folder / "tokenizer.json").exists():
        pytest.skip("the vendored tokenizer is built by set-up")
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    for row in train + heldout:
        system, user, assistant = row["messages"]
        text = (
            f"<|start|>system<|message|>{system['content']}<|end|>"
            f"<|start|>user<|message|>{user['content']}<|end|>"
            f"<|start|>assistant<|channel|>analysis<|message|>{assistant['thinking']}<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{assistant['content']}<|return|>"
        )
        assert len(tok(text, add_special_tokens=False)["input_ids"]) < 300


def test_each_analysis_opens_with_one_token_that_names_its_language(train, heldout, tokenizer):
    # The first token of a trace is where a model that follows "reasoning language: X" chooses the
    # language; no prefix may be shared by two languages.
    firsts: dict[str, set[int]] = collections.defaultdict(set)
    for row in train + heldout:
        ids = tokenizer(row["analysis"], add_special_tokens=False)["input_ids"]
        firsts[row["reasoning_language"]].add(ids[0])
    assert set(firsts) == set(LANGUAGES)
    assert all(len(ids) == 1 for ids in firsts.values()), firsts
    assert len(set().union(*firsts.values())) == len(LANGUAGES)
