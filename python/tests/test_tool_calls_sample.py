"""The project's own tool-calling sample: reproducible, in five languages, every call valid and every
result right, and no held-out request in training."""

import collections
import json
import re

import pytest
from jsonschema import validators

from oss_finetune.core import harmony
from oss_finetune.core.data import prepare, read_rows, to_row
from oss_finetune.core.sample_data import tool_calls as gen
from oss_finetune.core.sample_data.generate import to_jsonl

LANGUAGES = ["English", "French", "Spanish", "German", "Italian"]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in gen.TOOLS}


@pytest.fixture(scope="module")
def train():
    return read_rows("embedded:tool-calls")


@pytest.fixture(scope="module")
def heldout():
    return read_rows("embedded:tool-calls-heldout")


def turns(row: dict) -> list[dict]:
    """The messages after the optional system turn: user, assistant call, tool result, final answer."""
    messages = row["messages"]
    return messages[1:] if messages[0]["role"] == "system" else messages


def call_of(row: dict) -> tuple[str, dict]:
    function = turns(row)[1]["tool_calls"][0]["function"]
    return function["name"], function["arguments"]


def result_of(row: dict) -> dict:
    return json.loads(turns(row)[2]["content"])


def test_committed_files_equal_a_fresh_generation():
    train_rows, heldout_rows = gen.generate()
    assert gen.TRAIN_FILE.read_text(encoding="utf-8") == to_jsonl(train_rows)
    assert gen.HELDOUT_FILE.read_text(encoding="utf-8") == to_jsonl(heldout_rows)


def test_generation_is_stable_across_runs(tmp_path):
    gen.main(["--out-dir", str(tmp_path)])
    gen.main(["--out-dir", str(tmp_path / "again")])
    for name in (gen.TRAIN_FILE.name, gen.HELDOUT_FILE.name):
        assert (tmp_path / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_every_tool_and_language_is_covered_equally(train, heldout):
    for rows, per_cell in ((train, gen.TRAIN_PER_CELL), (heldout, gen.HELDOUT_PER_CELL)):
        cells = collections.Counter((call_of(r)[0], r["language"]) for r in rows)
        assert set(cells) == {(t, lang) for t in gen.TOOL_NAMES for lang in LANGUAGES}
        assert set(cells.values()) == {per_cell}
        # Any prefix is balanced: the first 15 rows hold every tool in every language once.
        assert len({(call_of(r)[0], r["language"]) for r in rows[:15]}) == 15


def test_rows_are_chats_with_tools_a_call_its_result_and_an_answer(train, heldout):
    for row in train + heldout:
        assert list(row) == ["language", "messages", "tools"]
        assert row["tools"] == gen.TOOLS
        roles = [m["role"] for m in turns(row)]
        assert roles == ["user", "assistant", "tool", "assistant"]
        name, arguments = call_of(row)
        assert turns(row)[2]["name"] == name
        # The reasoning is one short sentence that names the tool it calls.
        assert turns(row)[1]["thinking"].endswith(f"Call {name}.")
        assert turns(row)[3]["content"].strip()
        assert isinstance(arguments, dict)
    # Some rows carry instructions in a system turn, most only the tools.
    with_system = [r for r in train if r["messages"][0]["role"] == "system"]
    assert 0.1 * len(train) < len(with_system) < 0.6 * len(train)


def test_every_call_validates_against_its_tool_schema(train, heldout):
    for row in train + heldout:
        name, arguments = call_of(row)
        schema = SCHEMAS[name]
        assert not list(validators.validator_for(schema)(schema).iter_errors(arguments)), (name, arguments)


def test_results_are_right(train, heldout):
    checked = collections.Counter()
    for row in train + heldout:
        name, arguments = call_of(row)
        result = result_of(row)
        if name == "calculate":
            assert re.fullmatch(r"[\d ()+\-*/]+", arguments["expression"])
            value = eval(arguments["expression"], {"__builtins__": {}})  # digits and operators only
            assert result["result"] == pytest.approx(value, abs=0.006)
        elif name == "convert_units":
            convert, _ = gen.CONVERSIONS[(arguments["from_unit"], arguments["to_unit"])]
            assert result == {
                "value": pytest.approx(convert(arguments["value"]), abs=0.006),
                "unit": arguments["to_unit"],
            }
        else:
            capitals = {country: capital for country, capital, _ in gen.COUNTRIES}
            assert result == {"capital": capitals[arguments["country"]]}
        checked[name] += 1
    assert set(checked) == set(gen.TOOL_NAMES)


def test_answers_repeat_the_result_in_the_language_of_the_request(train, heldout):
    for row in train + heldout:
        name, arguments = call_of(row)
        result, final = result_of(row), turns(row)[3]["content"]
        lang = [k for k, v in gen.LANG_NAMES.items() if v == row["language"]][0]
        if name == "get_capital":
            assert result["capital"] in final
        else:
            value = result.get("result", result.get("value"))
            assert gen.number(value, lang) in final, (final, value)
        if lang != "en":
            assert not re.search(r"\b(the|is|of)\b", final), final


def test_requests_are_in_their_language(train, heldout):
    english = re.compile(r"\b(What|How|Convert|Compute|Can|Tell|Which|We)\b")
    for row in train + heldout:
        assert bool(english.search(turns(row)[0]["content"])) == (row["language"] == "English"), row


def test_no_heldout_request_is_in_training(train, heldout):
    seen = {turns(r)[0]["content"] for r in train}
    assert not [r for r in heldout if turns(r)[0]["content"] in seen]
    splits = gen.generate_with_keys()
    train_keys, heldout_keys = splits["train"][1], splits["heldout"][1]
    assert not set(train_keys) & set(heldout_keys)
    assert len(set(train_keys)) == len(train_keys) and len(set(heldout_keys)) == len(heldout_keys)


def test_numbers_follow_the_language():
    assert gen.number(7.456, "en") == "7.46" and gen.number(7.456, "fr") == "7,46"
    assert gen.number(38.5, "de") == "38,5" and gen.number(12.0, "it") == "12"
    assert gen.json_number(324.0) == 324 and gen.json_number(7.4567) == 7.46


def test_a_row_renders_as_a_harmony_tool_call(train, tokenizer):
    row = to_row(train[1], 1)
    rendered = harmony.render(row.conversation, mode="train", date="2025-06-28", tokenizer=tokenizer)
    text = tokenizer.decode(rendered.ids)
    name, arguments = call_of(train[1])
    assert "Calls to these tools must go to the commentary channel: 'functions'." in text
    assert "namespace functions {" in text and f"type {name} = " in text
    assert f"<|start|>assistant to=functions.{name}<|channel|>commentary <|constrain|>json<|message|>" in text
    assert f"{json.dumps(arguments, ensure_ascii=False)}<|call|><|start|>functions.{name} to=assistant" in text
    assert text.endswith(f"<|channel|>final<|message|>{turns(train[1])[3]['content']}<|return|>")


def test_every_row_prepares_and_fits_the_tutorials_max_seq_length(tokenizer):
    # The tiny base reads a request well only within about 250 tokens of the start, so the tools and
    # the request together stay short.
    from oss_finetune.notebook.tutorial import TOOL_SETTINGS

    for source in ("embedded:tool-calls", "embedded:tool-calls-heldout"):
        prepared = prepare(dict(TOOL_SETTINGS["data"], source=source), tokenizer)
        assert prepared.summary["over_limit"]["rows"] == 0
        assert prepared.summary["skipped_rows"] == []
        assert len(prepared.examples) == (300 if source == "embedded:tool-calls" else 60)
        assert max(len(e.input_ids) for e in prepared.examples) <= TOOL_SETTINGS["data"]["max_seq_length"]
