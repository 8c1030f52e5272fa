"""Data: rows in three formats from four kinds of source become tokenized examples and a summary.

Read as a manual: each test shows one rule of `oss_finetune.core.data`.
"""

from __future__ import annotations

import json

import pytest

from oss_finetune.core import data as d
from oss_finetune.core.harmony import render

DATE = "2025-06-28"

MT_ROW = {  # a Multilingual-Thinking row with its own columns
    "reasoning_language": "French",
    "developer": "You are a concise assistant.",
    "user": "Capital of Italy?",
    "analysis": "La capitale de l'Italie est Rome.",
    "final": "Rome.",
    "messages": [],
}
MESSAGES_ROW = {
    "messages": [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "thinking": "Greet back."},
    ]
}
SHAREGPT_ROW = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_formats_are_detected():
    assert d.detect_format(MT_ROW) == "multilingual-thinking"
    assert d.detect_format(MESSAGES_ROW) == "messages"
    assert d.detect_format(SHAREGPT_ROW) == "sharegpt"
    only_messages = {
        "messages": [{"role": "system", "content": "reasoning language: German\n\nHelp."}]
        + MESSAGES_ROW["messages"][1:]
    }
    assert d.detect_format(only_messages) == "multilingual-thinking"


def test_multilingual_thinking_columns_become_harmony(tokenizer):
    row = d.to_row(MT_ROW, 0)
    assert row.language == "French"
    text = render(row.conversation, date=DATE, tokenizer=tokenizer).decoded()
    assert "# Instructions\n\nreasoning language: French\n\nYou are a concise assistant.<|end|>" in text
    assert "<|channel|>analysis<|message|>La capitale de l'Italie est Rome.<|end|>" in text
    assert text.endswith("<|channel|>final<|message|>Rome.<|return|>")


def test_the_shared_rows_system_turn_becomes_the_developer_message(shared_data):
    rows = json.loads((shared_data / "multilingual-thinking.sample-4rows.json").read_text())
    converted = [d.to_row(r, i) for i, r in enumerate(rows)]
    assert [r.language for r in converted] == ["Italian", "French", "Spanish", "Spanish"]
    conv = converted[0].conversation
    assert conv.instructions() == rows[0]["messages"][0]["content"]
    assert [(m.role, m.channel) for m in conv.messages] == [
        ("user", None),
        ("assistant", "analysis"),
        ("assistant", "final"),
    ]
    assert conv.messages[1].content == rows[0]["messages"][2]["thinking"]


def test_messages_and_sharegpt_rows(tokenizer):
    msgs = d.to_row(MESSAGES_ROW, 0).conversation
    assert msgs.developer_instructions == "Be kind."
    assert [m.content for m in msgs.messages] == ["Hi", "Greet back.", "Hello!"]
    share = d.to_row(SHAREGPT_ROW, 0)
    assert share.format == "sharegpt"
    assert [(m.role, m.content) for m in share.conversation.messages] == [("user", "Hi"), ("assistant", "Hello!")]


def test_tool_calls_in_messages_rows(tokenizer):
    row = {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Rome"}}}
                ],
            },
            {"role": "tool", "content": {"temp": 20}},
            {"role": "assistant", "content": "20 degrees."},
        ]
    }
    conv = d.to_row(row, 0).conversation
    call, result = conv.messages[1], conv.messages[2]
    assert (call.recipient, call.channel, call.content_type, call.content) == (
        "functions.get_weather",
        "commentary",
        "<|constrain|>json",
        '{"city": "Rome"}',
    )
    assert (result.name, result.content) == ("functions.get_weather", '{"temp": 20}')


@pytest.mark.parametrize(
    "row, message",
    [
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]},
            "row 3, field messages[1].role: must be one of system, developer, user, assistant, tool",
        ),
        (
            {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "b"}]},
            "row 3, field messages[0].content: must be a string, got a int",
        ),
        (
            {"messages": [{"role": "user", "content": "only a question"}]},
            "row 3, field messages: has no assistant message",
        ),
        ({"messages": []}, "row 3, field messages: must be a non-empty list"),
        (
            {"conversations": [{"from": "bot", "value": "x"}]},
            "row 3, field conversations[0].from: must be one of human",
        ),
        ({**MT_ROW, "final": None}, "row 3, field final: must be a string, got missing"),
        ({**MT_ROW, "reasoning_effort": "extreme"}, "row 3, field reasoning_effort: must be one of low, medium, high"),
        ({"text": "plain"}, "row 3: unknown format"),
        ([1, 2], "row 3: must be an object, got list"),
    ],
)
def test_bad_rows_name_row_and_field(row, message):
    with pytest.raises(d.BadRowError) as err:
        d.to_row(row, 3)
    assert str(err.value).startswith(message)
    assert err.value.row == 3


def test_local_sources_jsonl_json_parquet(tmp_path):
    rows = [MT_ROW, MESSAGES_ROW, SHAREGPT_ROW]
    jsonl = write_jsonl(tmp_path / "a.jsonl", rows)
    js = tmp_path / "a.json"
    js.write_text(json.dumps(rows))
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([MESSAGES_ROW, MESSAGES_ROW]), tmp_path / "a.parquet")
    assert d.read_rows(str(jsonl)) == rows
    assert d.read_rows(str(js), limit=2) == rows[:2]
    assert [
        d.to_row(r, i).conversation.messages[0].content for i, r in enumerate(d.read_rows(str(tmp_path / "a.parquet")))
    ] == ["Hi", "Hi"]


def test_source_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        d.read_rows(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FileNotFoundError, match="no embedded data set 'nothing-here'"):
        d.read_rows("embedded:nothing-here")
    (tmp_path / "a.csv").write_text("x")
    with pytest.raises(ValueError, match=r"\.jsonl, \.json, \.parquet"):
        d.read_rows(str(tmp_path / "a.csv"))
    # Anything else is a hub id, read through `datasets` (not reachable in these tests).
    assert d.resolve_source("HuggingFaceH4/Multilingual-Thinking") == "HuggingFaceH4/Multilingual-Thinking"


def test_prepare_summary_is_valid_and_exact(tmp_path, tokenizer):
    from oss_finetune.core.schema import validate

    path = write_jsonl(tmp_path / "rows.jsonl", [MT_ROW, MESSAGES_ROW, SHAREGPT_ROW])
    prepared = d.prepare({"source": str(path), "max_seq_length": 1024}, tokenizer, date=DATE)
    s = prepared.summary
    validate("dataset-summary", s)
    assert (s["rows"], s["rows_read"], s["skipped_rows"]) == (3, 3, [])
    assert s["languages"] == {"French": 1, "unspecified": 2}
    assert "format" not in s  # mixed formats
    assert sum(s["token_lengths"]["counts"]) == 3
    assert s["tokens_total"] == sum(len(e.input_ids) for e in prepared.examples)
    assert s["tokens_trained"] == sum(sum(e.trained) for e in prepared.examples) < s["tokens_total"]
    first = prepared.examples[0]
    assert first.input_ids == render(d.to_row(MT_ROW, 0).conversation, date=DATE, tokenizer=tokenizer).ids
    assert first.labels[:3] == [-100, -100, -100] and first.labels[-1] == first.input_ids[-1]


@pytest.mark.parametrize("overflow", ["drop", "truncate"])
def test_rows_over_the_limit_are_reported(tmp_path, tokenizer, overflow):
    long = {**MT_ROW, "final": "word " * 200}
    path = write_jsonl(tmp_path / "rows.jsonl", [MT_ROW, long])
    p = d.prepare({"source": str(path), "max_seq_length": 128, "overflow": overflow}, tokenizer, date=DATE)
    assert p.summary["over_limit"] == {"rows": 1, "action": overflow, "row_indices": [1]}
    assert p.summary["token_lengths"]["max"] > 128  # the histogram shows the length before the cut
    if overflow == "drop":
        assert [e.row for e in p.examples] == [0]
    else:
        assert [len(e.input_ids) for e in p.examples][1] == 128 and p.examples[1].truncated


def test_bad_rows_stop_or_are_skipped_and_counted(tmp_path, tokenizer):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(MT_ROW) + "\n{not json\n" + json.dumps({"messages": [{"role": "x"}]}) + "\n")
    with pytest.raises(d.BadRowError, match="row 1: not valid JSON"):
        d.prepare({"source": str(path)}, tokenizer)
    p = d.prepare({"source": str(path), "on_bad_row": "skip"}, tokenizer, date=DATE)
    assert p.summary["rows"] == 1
    assert [(s["row"], s["field"]) for s in p.summary["skipped_rows"]] == [(1, None), (2, "messages[0].role")]


def test_special_tokens_in_content_are_a_bad_row(tmp_path, tokenizer):
    bad = {**MT_ROW, "final": "done<|return|>"}
    path = write_jsonl(tmp_path / "rows.jsonl", [MT_ROW, bad])
    with pytest.raises(d.BadRowError, match=r"row 1, field messages: .*<\|return\|>"):
        d.prepare({"source": str(path)}, tokenizer)
    p = d.prepare({"source": str(path), "on_bad_row": "skip"}, tokenizer)
    assert [s["row"] for s in p.summary["skipped_rows"]] == [1]


def test_limit_effort_and_loss_mask(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "rows.jsonl", [MT_ROW] * 5)
    p = d.prepare(
        {"source": str(path), "limit": 2, "reasoning_effort": "high", "loss_mask": "final"}, tokenizer, date=DATE
    )
    assert p.summary["rows_read"] == 2 and p.summary["loss_mask"] == "final"
    assert "Reasoning: high" in tokenizer.decode(p.examples[0].input_ids)
    full = d.prepare({"source": str(path), "limit": 2}, tokenizer, date=DATE)
    assert p.summary["tokens_trained"] < full.summary["tokens_trained"]


def test_histogram_puts_the_limit_on_an_edge():
    h = d.histogram([10, 100, 300], max_seq_length=200)
    assert 200 in h["edges"] and h["edges"][-1] >= 300
    assert sum(h["counts"]) == 3 and (h["min"], h["max"]) == (10, 300)
