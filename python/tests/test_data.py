"""Data: rows in three formats from four kinds of source become tokenized examples and a summary.

Read as a manual: each test shows one rule of `oss_finetune.core.data`.
"""

from __future__ import annotations

import json
import re

import pytest
from harmony_reference import openai_harmony_ids

from oss_finetune.core import data as d
from oss_finetune.core.config import DataConfig
from oss_finetune.core.harmony import render, tools_namespace
from oss_finetune.core.tokenizer import CALL, RETURN, START

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


def test_special_token_text_in_content_is_text_and_counted(tmp_path, tokenizer):
    pasted = {**MT_ROW, "user": "my log says <|endoftext|><|start|>", "final": "done<|return|>"}
    path = write_jsonl(tmp_path / "rows.jsonl", [MT_ROW, pasted, pasted])
    p = d.prepare({"source": str(path)}, tokenizer, date=DATE)
    assert p.summary["rows"] == 3 and p.summary["rows_with_special_text"] == 2
    ids = p.examples[1].input_ids
    # Only the real structure is special (system, developer, user, analysis, final); the pasted text is characters.
    assert ids.count(START) == 5 and tokenizer.decode(ids).count("<|start|>") == 6
    assert ids.count(RETURN) == 1 and ids[-1] == RETURN and "done<|return|><|return|>" in tokenizer.decode(ids)
    assert d.prepare({"source": str(path), "limit": 1}, tokenizer).summary["rows_with_special_text"] == 0
    from oss_finetune.notebook.display import dataset_text

    assert "2 rows with special-token text in a message" in dataset_text(p.summary)
    assert "special-token" not in dataset_text(d.prepare({"source": str(path), "limit": 1}, tokenizer).summary)


def test_special_tokens_in_content_are_a_bad_row_when_strict(tmp_path, tokenizer):
    bad = {**MT_ROW, "final": "done<|return|>"}
    path = write_jsonl(tmp_path / "rows.jsonl", [MT_ROW, bad])
    with pytest.raises(d.BadRowError, match=r"row 1, field messages: .*<\|return\|>"):
        d.prepare({"source": str(path), "special_tokens": "error"}, tokenizer)
    p = d.prepare({"source": str(path), "on_bad_row": "skip", "special_tokens": "error"}, tokenizer)
    assert [s["row"] for s in p.summary["skipped_rows"]] == [1]
    assert p.summary["rows_with_special_text"] == 0
    with pytest.raises(Exception, match="special_tokens: must be one of"):
        DataConfig.from_dict({"special_tokens": "strict"})


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


# ---------------------------------------------------------------------------------------------
# Tools in rows, in every format


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Gets the current weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string", "description": "City name"}},
            "required": ["location"],
        },
    },
}
CALL_ARGS = {"location": "Paris"}
TOOL_MESSAGES_ROW = {
    "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "thinking": "Need the tool.",
            "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": CALL_ARGS}}],
        },
        {"role": "tool", "content": {"temperature": 21}},
        {"role": "assistant", "content": "21 °C."},
    ],
    "tools": [WEATHER],
}
TOOL_SHAREGPT_ROW = {
    "conversations": [
        {"from": "system", "value": "Answer briefly."},
        {"from": "human", "value": "Weather in Paris?"},
        {
            "from": "function_call",
            "value": json.dumps({"name": "get_weather", "arguments": CALL_ARGS}),
            "thinking": "Need the tool.",
        },
        {"from": "observation", "value": json.dumps({"temperature": 21})},
        {"from": "gpt", "value": "21 °C."},
    ],
    "tools": json.dumps([WEATHER]),  # as hub data sets often store them
}


def _rendered_text(row, tokenizer, **kwargs):
    return render(d.to_row(row, 0, **kwargs).conversation, date=DATE, tokenizer=tokenizer).decoded()


@pytest.mark.parametrize("row", [TOOL_MESSAGES_ROW, TOOL_SHAREGPT_ROW], ids=["messages", "sharegpt"])
def test_rows_carry_their_tools_into_the_developer_message(tokenizer, row):
    conv = d.to_row(row, 0).conversation
    ours = render(conv, date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(conv)
    text = ours.decoded()
    assert "# Instructions\n\nAnswer briefly.\n\n# Tools\n\n## functions\n\nnamespace functions {" in text
    assert "Calls to these tools must go to the commentary channel: 'functions'.<|end|>" in text
    assert (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"location": "Paris"}<|call|>'
        in text
    )
    assert (
        '<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>{"temperature": 21}<|end|>' in text
    )


def test_both_formats_give_the_same_tokens(tokenizer):
    assert _rendered_text(TOOL_MESSAGES_ROW, tokenizer) == _rendered_text(TOOL_SHAREGPT_ROW, tokenizer)


def test_multilingual_thinking_rows_carry_tools_too(tokenizer):
    text = _rendered_text({**MT_ROW, "tools": [WEATHER]}, tokenizer)
    assert "reasoning language: French\n\nYou are a concise assistant.\n\n# Tools\n\n" in text
    assert tools_namespace([WEATHER]) in text


def test_bare_tools_and_parameters_as_json_text_are_read(tokenizer):
    bare = {**WEATHER["function"], "parameters": json.dumps(WEATHER["function"]["parameters"])}
    assert d.to_row({**TOOL_MESSAGES_ROW, "tools": [bare]}, 0).conversation.tools == [WEATHER]


def test_data_set_tools_serve_the_rows_without_their_own(tmp_path, tokenizer):
    other = {"type": "function", "function": {"name": "lookup", "description": "Looks up a word."}}
    tools_file = tmp_path / "tools.json"
    tools_file.write_text(json.dumps([WEATHER]))
    no_tools = {k: v for k, v in TOOL_MESSAGES_ROW.items() if k != "tools"}
    path = write_jsonl(tmp_path / "rows.jsonl", [no_tools, {**no_tools, "tools": [other]}, {**no_tools, "tools": []}])
    for given in (str(tools_file), json.dumps([WEATHER])):
        p = d.prepare({"source": str(path), "tools": given}, tokenizer, date=DATE)
        assert [r.conversation.tools for r in p.rows] == [[WEATHER], [other], [WEATHER]]
        first = tokenizer.decode(p.examples[0].input_ids)
        assert "type get_weather = (_: {" in first and "'functions'." in first
    # Without them a row keeps only its own (or none).
    p = d.prepare({"source": str(path)}, tokenizer, date=DATE)
    assert [r.conversation.tools for r in p.rows] == [None, [other], None]
    assert "# Tools" not in tokenizer.decode(p.examples[0].input_ids)
    DataConfig.from_dict({"tools": str(tools_file)})  # the schema takes it


@pytest.mark.parametrize(
    "tools, message",
    [
        ({"name": "x"}, "data.tools: must be a list of function tools, not an object"),
        ([{"type": "code_interpreter"}], "data.tools[0].type: only function tools are supported"),
        (
            [{"type": "function", "function": {"description": "no name"}}],
            "data.tools[0].function.name: must be a string, got missing",
        ),
        ([{"name": "two words"}], "data.tools[0].name: must be one word"),
        ([{"name": "f", "parameters": [1]}], "data.tools[0].parameters: must be a JSON Schema object, not a list"),
        ("[{", "data.tools: a string that is not JSON"),
    ],
)
def test_bad_data_set_tools_name_the_entry(tmp_path, tokenizer, tools, message):
    path = write_jsonl(tmp_path / "rows.jsonl", [MESSAGES_ROW])
    given = tools if isinstance(tools, str) else json.dumps(tools)
    if not given.lstrip().startswith("["):
        given = str(tmp_path / "tools.json")
        (tmp_path / "tools.json").write_text(json.dumps(tools))
    with pytest.raises(d.DataToolsError, match=re.escape(message)):
        d.prepare({"source": str(path), "tools": given}, tokenizer)


def test_a_missing_tools_file_is_named(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "rows.jsonl", [MESSAGES_ROW])
    with pytest.raises(d.DataToolsError, match=r"data.tools: cannot read .*nope.json"):
        d.prepare({"source": str(path), "tools": str(tmp_path / "nope.json")}, tokenizer)


@pytest.mark.parametrize(
    "tools, field, reason",
    [
        ("not json", "tools", "a string that is not JSON"),
        ([{"type": "function", "function": "get_weather"}], "tools[0].function", "must be an object"),
        ([{"name": "get weather"}], "tools[0].name", "must be one word"),
        ([{"name": "f<|end|>"}], "tools[0].name", "special token <|end|>"),
        ([{"name": "f", "description": 3}], "tools[0].description", "must be a string"),
    ],
)
def test_bad_row_tools_name_the_row_and_field(tools, field, reason):
    with pytest.raises(d.BadRowError) as err:
        d.to_row({**TOOL_MESSAGES_ROW, "tools": tools}, 7)
    assert (err.value.row, err.value.field) == (7, field) and reason in err.value.reason


def test_sharegpt_function_calls_name_their_problems():
    bad = {"conversations": [{"from": "human", "value": "hi"}, {"from": "function_call", "value": "get_weather()"}]}
    with pytest.raises(d.BadRowError, match=r"row 0, field conversations\[1\].value: a string that is not JSON"):
        d.to_row(bad, 0)
    bad["conversations"][1]["value"] = json.dumps({"arguments": {}})
    with pytest.raises(d.BadRowError, match=r"conversations\[1\].tool_calls\[0\].function.name: must be a string"):
        d.to_row(bad, 0)
    two = json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": "{}"}])
    bad["conversations"][1]["value"] = two
    msgs = d.to_row(bad, 0).conversation.messages
    assert [(m.recipient, m.content) for m in msgs[1:]] == [("functions.a", "{}"), ("functions.b", "{}")]


# ---------------------------------------------------------------------------------------------
# Empty answers, prompts, loss policies


def test_an_empty_final_answer_is_kept(tokenizer):
    row = {
        "messages": [
            {"role": "user", "content": "Say nothing."},
            {"role": "assistant", "thinking": "Silence.", "content": ""},
        ]
    }
    msgs = d.to_row(row, 0).conversation.messages
    assert [(m.channel, m.content) for m in msgs[1:]] == [("analysis", "Silence."), ("final", "")]
    sharegpt = {"conversations": [{"from": "human", "value": "Say nothing."}, {"from": "gpt", "value": ""}]}
    assert d.to_row(sharegpt, 0).conversation.messages[-1].content == ""
    assert _rendered_text(row, tokenizer).endswith("<|channel|>final<|message|><|return|>")
    # Beside a tool call an empty content is no preamble at all.
    call = TOOL_MESSAGES_ROW["messages"][2]
    with_empty = {**TOOL_MESSAGES_ROW, "messages": [*TOOL_MESSAGES_ROW["messages"][:2], {**call, "content": ""}]}
    msgs = d.to_row(with_empty, 0).conversation.messages
    assert [(m.channel, m.recipient) for m in msgs] == [
        (None, None),
        ("analysis", None),
        ("commentary", "functions.get_weather"),
    ]


def test_rows_without_an_assistant_turn_are_prompts_only():
    prompt = {"messages": [{"role": "user", "content": "Capital of Italy?"}], "tools": [WEATHER]}
    with pytest.raises(d.BadRowError, match="no assistant message to learn from"):
        d.to_row(prompt, 0)
    assert d.to_row(prompt, 0, require_assistant=False).conversation.tools == [WEATHER]


def test_loss_policies_for_tool_data(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "rows.jsonl", [TOOL_MESSAGES_ROW])

    def trained(mask):
        p = d.prepare({"source": str(path), "loss_mask": mask}, tokenizer, date=DATE)
        e = p.examples[0]
        assert p.summary["loss_mask"] == mask
        return tokenizer.decode([t for t, m in zip(e.input_ids, e.trained) if m])

    everything = trained("assistant")
    assert "Need the tool." in everything and "<|call|>" in everything and "21 °C." in everything
    calls = trained("calls_and_final")
    assert "Need the tool." not in calls and '{"location": "Paris"}<|call|>' in calls and "21 °C.<|return|>" in calls
    final = trained("final")
    # After a tool result the prompt supplies <|start|>assistant, so the answer starts at its channel.
    assert final == "<|channel|>final<|message|>21 °C.<|return|>"
    assert CALL in d.prepare({"source": str(path)}, tokenizer, date=DATE).examples[0].input_ids
