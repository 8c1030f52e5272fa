"""Harmony at token level, checked token by token against the two references.

The references: openai-harmony (OpenAI's library for the format) and the gpt-oss chat template that
TRL ships (what `tokenizer.apply_chat_template` renders). Where they disagree, docs/harmony.md says
which one we follow; the tests below pin each disagreement down exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from oss_finetune.core import harmony as h
from oss_finetune.core.data import to_row
from oss_finetune.core.tokenizer import CALL, CHANNEL, END, MESSAGE, RETURN, START, use_offline_encodings

DATE = "2025-06-28"

use_offline_encodings()
import openai_harmony as oh  # noqa: E402  (needs the offline encodings set first)

ENC = oh.load_harmony_encoding(oh.HarmonyEncodingName.HARMONY_GPT_OSS)


def _trl_template(name: str) -> str:
    import trl

    text = (Path(trl.__file__).parent / "chat_templates" / name).read_text()
    # The template stamps today's date through a function; pin it the way a reader can see.
    call = 'strftime_now("%Y-%m-%d")'
    assert text.count(call) == 1
    return text.replace(call, f'"{DATE}"')


TRL = _trl_template("gptoss.jinja")
TRL_TRAINING = _trl_template("gptoss_training.jinja")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Gets the current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["location"],
        },
    },
}


# ---------------------------------------------------------------------------------------------
# Reference renderers


def openai_harmony_ids(conv: h.Conversation, mode: str = "train") -> list[int]:
    """openai-harmony given exactly the messages we show (it is not asked to drop any)."""
    system = oh.SystemContent.new().with_reasoning_effort(oh.ReasoningEffort(conv.reasoning_effort.capitalize()))
    system = system.with_conversation_start_date(DATE)
    msgs = [oh.Message.from_role_and_content(oh.Role.SYSTEM, system)]
    if conv.instructions() or conv.tools:
        dev = oh.DeveloperContent.new()
        if conv.instructions():
            dev = dev.with_instructions(conv.instructions())
        if conv.tools:
            dev = dev.with_function_tools(
                [
                    oh.ToolDescription.new(
                        t["function"]["name"], t["function"]["description"], parameters=t["function"]["parameters"]
                    )
                    for t in conv.tools
                ]
            )
        msgs.append(oh.Message.from_role_and_content(oh.Role.DEVELOPER, dev))
    for m in h.visible_messages(conv.messages, mode):
        if m.role == "tool":
            msg = oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, m.name), m.content)
        else:
            msg = oh.Message.from_role_and_content(oh.Role(m.role), m.content)
        if m.channel:
            msg = msg.with_channel(m.channel)
        if m.recipient:
            msg = msg.with_recipient(m.recipient)
        if m.content_type:
            msg = msg.with_content_type(m.content_type)
        msgs.append(msg)
    ohconv = oh.Conversation.from_messages(msgs)
    keep = oh.RenderConversationConfig(auto_drop_analysis=False)
    if mode == "prompt":
        return ENC.render_conversation_for_completion(ohconv, oh.Role.ASSISTANT, keep)
    return ENC.render_conversation_for_training(ohconv, keep)


def trl_ids(
    tokenizer, messages: list[dict], effort: str, tools=None, prompt: bool = False, template: str = TRL
) -> list[int]:
    out = tokenizer.apply_chat_template(
        messages,
        tools=tools,
        chat_template=template,
        tokenize=True,
        add_generation_prompt=prompt,
        reasoning_effort=effort,
        return_dict=True,
    )
    return list(out["input_ids"])


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def assert_trl_adds_blank_line_after_instructions(tokenizer, trl: list[int], ours: h.Rendered) -> None:
    """TRL's render equals ours but for "\n\n" before the developer message's <|end|>."""
    dev_end = ours.ids.index(END, ours.ids.index(END) + 1)
    dev_start = ours.ids.index(START, 1)
    # Outside the developer message the ids are identical.
    assert trl[:dev_start] == ours.ids[:dev_start]
    assert trl[len(trl) - (len(ours.ids) - dev_end) :] == ours.ids[dev_end:]
    # Inside, the text differs by the blank line alone (it may merge with the token before it).
    dev_text = tokenizer.decode(ours.ids[dev_start:dev_end])
    assert tokenizer.decode(trl[dev_start : len(trl) - (len(ours.ids) - dev_end)]) == dev_text + "\n\n"


# ---------------------------------------------------------------------------------------------
# Conversations of every kind


def simple(effort: str = "medium") -> h.Conversation:
    return h.Conversation(
        [
            h.Message("user", "What is 2 + 2?"),
            h.Message("assistant", "Simple sum.", channel="analysis"),
            h.Message("assistant", "4", channel="final"),
        ],
        reasoning_effort=effort,
    )


def with_tools() -> h.Conversation:
    args = json.dumps({"location": "Paris"})
    result = json.dumps({"temperature": 21, "sky": "clear"})
    return h.Conversation(
        [
            h.Message("user", "What is the weather in Paris?"),
            h.Message("assistant", "Nécessite l'outil météo.", channel="analysis"),
            h.Message(
                "assistant",
                args,
                channel="commentary",
                recipient="functions.get_weather",
                content_type="<|constrain|>json",
            ),
            h.Message("tool", result, name="functions.get_weather"),
            h.Message("assistant", "Il fait beau.", channel="analysis"),
            h.Message("assistant", "21 °C and clear.", channel="final"),
        ],
        reasoning_effort="high",
        developer_instructions="Answer briefly.",
        reasoning_language="French",
        tools=[WEATHER_TOOL],
    )


def multi_turn() -> h.Conversation:
    return h.Conversation(
        [
            h.Message("user", "Hi"),
            h.Message("assistant", "greet-1", channel="analysis"),
            h.Message("assistant", "Hello!"),
            h.Message("user", "2+2?"),
            h.Message("assistant", "add-2", channel="analysis"),
            h.Message("assistant", "4"),
            h.Message("user", "3+3?"),
            h.Message("assistant", "add-3", channel="analysis"),
            h.Message("assistant", "6"),
        ],
        reasoning_effort="low",
        developer_instructions="reasoning language: German\n\nBe short.",
    )


def simple_trl_messages() -> list[dict]:
    return [
        {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "thinking": "Simple sum.", "content": "4"},
    ]


# ---------------------------------------------------------------------------------------------
# Token-exact against both references


@pytest.mark.parametrize("effort", h.EFFORTS)
def test_each_effort_matches_both_references(tokenizer, effort):
    ours = h.render(simple(effort), date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(simple(effort))
    assert ours.ids == trl_ids(tokenizer, simple_trl_messages(), effort)
    assert f"Reasoning: {effort}\n\n" in ours.decoded()


@pytest.mark.parametrize("effort", h.EFFORTS)
def test_prompt_matches_both_references(tokenizer, effort):
    ours = h.render(simple(effort), mode="prompt", date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(simple(effort), mode="prompt")
    assert ours.ids == trl_ids(tokenizer, simple_trl_messages()[:1], effort, prompt=True)
    assert ours.ids[-2:] == [START, _ids(tokenizer, "assistant")[0]]


def test_developer_instructions_differ_from_trl_by_one_blank_line(tokenizer):
    # TRL's template writes "\n\n" after the instructions even when no tools follow; openai-harmony
    # does not. We follow openai-harmony (docs/harmony.md says why): exactly one token apart.
    conv = simple("low")
    conv.developer_instructions = "Be brief."
    conv.reasoning_language = "Spanish"
    ours = h.render(conv, date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(conv)
    trl = trl_ids(
        tokenizer,
        [{"role": "system", "content": "reasoning language: Spanish\n\nBe brief."}] + simple_trl_messages(),
        "low",
    )
    assert trl != ours.ids
    assert_trl_adds_blank_line_after_instructions(tokenizer, trl, ours)
    assert "# Instructions\n\nreasoning language: Spanish\n\nBe brief.<|end|>" in ours.decoded()


def test_tool_call_and_result_match_openai_harmony(tokenizer):
    ours = h.render(with_tools(), date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(with_tools())
    text = ours.decoded()
    assert (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"location": "Paris"}<|call|>'
        in text
    )
    assert "<|start|>functions.get_weather to=assistant<|channel|>commentary<|message|>" in text
    assert "Calls to these tools must go to the commentary channel: 'functions'.<|end|>" in text
    # The whole last turn keeps its reasoning when training, the one before the tool call included.
    assert "Nécessite l'outil météo." in text and "Il fait beau." in text


def test_tool_call_matches_trl_except_the_reasoning_before_it(tokenizer):
    # TRL drops the analysis before a tool call once a final answer follows, even in the turn being
    # trained; openai-harmony and we keep it, because the model saw it while writing the rest.
    conv = with_tools()
    trl_messages = [
        {"role": "system", "content": conv.instructions()},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "thinking": "Nécessite l'outil météo.",
            "tool_calls": [
                {
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": {"location": "Paris"},
                        "content_type": "<|constrain|>json",
                    },
                }
            ],
        },
        {"role": "tool", "content": {"temperature": 21, "sky": "clear"}},
        {"role": "assistant", "thinking": "Il fait beau.", "content": "21 °C and clear."},
    ]
    trl = trl_ids(tokenizer, trl_messages, "high", tools=[WEATHER_TOOL])
    conv.messages = [m for m in conv.messages if m.content != "Nécessite l'outil météo."]
    assert h.render(conv, date=DATE, tokenizer=tokenizer).ids == trl


def test_multi_turn_drops_earlier_analysis_like_trl(tokenizer):
    conv = multi_turn()
    ours = h.render(conv, date=DATE, tokenizer=tokenizer)
    text = ours.decoded()
    assert "greet-1" not in text and "add-2" not in text and "add-3" in text
    trl_messages = [{"role": "system", "content": conv.developer_instructions}]
    for q, think, a in (("Hi", "greet-1", "Hello!"), ("2+2?", "add-2", "4"), ("3+3?", "add-3", "6")):
        trl_messages += [{"role": "user", "content": q}, {"role": "assistant", "thinking": think, "content": a}]
    assert_trl_adds_blank_line_after_instructions(tokenizer, trl_ids(tokenizer, trl_messages, "low"), ours)
    assert ours.ids == openai_harmony_ids(conv)


def test_openai_harmony_default_drop_rule_is_not_ours():
    # Pinned so that a change in the reference shows up here. openai-harmony 0.0.8 with its default
    # config (auto_drop_analysis=True) drops every analysis before the *first* final message: the
    # trained turn's reasoning in a one-turn row, but not the reasoning of a middle turn.
    msgs = [
        oh.Message.from_role_and_content(oh.Role.USER, "q1"),
        oh.Message.from_role_and_content(oh.Role.ASSISTANT, "a1").with_channel("analysis"),
        oh.Message.from_role_and_content(oh.Role.ASSISTANT, "f1").with_channel("final"),
    ]
    one_turn = ENC.decode(ENC.render_conversation_for_training(oh.Conversation.from_messages(msgs)))
    assert "a1" not in one_turn
    more = msgs + [
        oh.Message.from_role_and_content(oh.Role.USER, "q2"),
        oh.Message.from_role_and_content(oh.Role.ASSISTANT, "a2").with_channel("analysis"),
        oh.Message.from_role_and_content(oh.Role.ASSISTANT, "f2").with_channel("final"),
        oh.Message.from_role_and_content(oh.Role.USER, "q3"),
    ]
    prompt = ENC.decode(ENC.render_conversation_for_completion(oh.Conversation.from_messages(more), oh.Role.ASSISTANT))
    assert "a1" not in prompt and "a2" in prompt


def test_prompt_drops_every_answered_turns_analysis():
    conv = multi_turn()
    names = [m.content for m in h.visible_messages(conv.messages, "prompt")]
    # The trailing assistant messages are what the model is asked to write.
    assert names == ["Hi", "Hello!", "2+2?", "4", "3+3?"]
    # A tool chain still in progress keeps its reasoning: no final answer has been given yet.
    chain = with_tools().messages[:4]
    assert [m.content for m in h.visible_messages(chain, "prompt")][1] == "Nécessite l'outil météo."


def _real_rows(shared_data):
    rows = json.loads((shared_data / "multilingual-thinking.sample-4rows.json").read_text())
    assert len(rows) == 4
    return rows


def test_real_rows_match_trl_training_template(tokenizer, shared_data):
    for i, raw in enumerate(_real_rows(shared_data)):
        conv = to_row(raw, i).conversation
        ours = h.render(conv, date=DATE, tokenizer=tokenizer)
        trl = trl_ids(tokenizer, raw["messages"], "medium", template=TRL_TRAINING)
        assert_trl_adds_blank_line_after_instructions(tokenizer, trl, ours)
        assert ours.ids == openai_harmony_ids(conv), f"row {i}"
        # The reasoning in the requested language is there, and trained.
        analysis = [i for i, c in enumerate(ours.channel) if c == "analysis" and ours.part[i] == "content"]
        assert analysis and all(ours.trained[i] for i in analysis)


def test_real_rows_prompts_match_both_references(tokenizer, shared_data):
    for i, raw in enumerate(_real_rows(shared_data)):
        conv = to_row(raw, i).conversation
        ours = h.render(conv, mode="prompt", date=DATE, tokenizer=tokenizer)
        assert ours.ids == openai_harmony_ids(conv, mode="prompt")
        trl = trl_ids(tokenizer, raw["messages"][:-1], "medium", prompt=True)
        assert_trl_adds_blank_line_after_instructions(tokenizer, trl, ours)


def test_trl_assistant_mask_also_trains_the_start_header(tokenizer):
    # TRL's {% generation %} marks `<|start|>assistant` of every assistant message as trained; we
    # train it only where the model writes it itself (after its own <|end|>), see the mask tests.
    out = tokenizer.apply_chat_template(
        simple_trl_messages(),
        chat_template=TRL_TRAINING,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    ours = h.render(simple(), date=DATE, tokenizer=tokenizer)
    theirs = [bool(x) for x in out["assistant_masks"]]
    differ = [i for i, (a, b) in enumerate(zip(ours.trained, theirs)) if a != b]
    first_start = ours.ids.index(START, ours.ids.index(START, ours.ids.index(START) + 1) + 1)
    assert differ == [first_start, first_start + 1]


# ---------------------------------------------------------------------------------------------
# Labels and loss masks


def test_every_token_is_labelled(tokenizer):
    r = h.render(with_tools(), date=DATE, tokenizer=tokenizer)
    n = len(r.ids)
    assert all(len(x) == n for x in (r.message, r.role, r.channel, r.part, r.trained, r.text))
    assert "".join(r.text) == tokenizer.decode(r.ids, skip_special_tokens=False)
    roles = [m["role"] for m in r.messages]
    assert roles == ["system", "developer", "user", "assistant", "assistant", "tool", "assistant", "assistant"]
    call = r.messages[4]
    assert call["recipient"] == "functions.get_weather" and call["content_type"] == "<|constrain|>json"
    assert r.messages[5]["author_name"] == "functions.get_weather" and r.messages[5]["channel"] == "commentary"
    for i, t in enumerate(r.ids):
        if t in (START, END, MESSAGE, CHANNEL, CALL, RETURN):
            assert r.part[i] == "special", i
    # The header of the tool call: role, recipient and content type are header tokens.
    span = [i for i in range(n) if r.message[i] == 4 and r.part[i] == "header"]
    assert "".join(r.text[i] for i in span) == "assistant to=functions.get_weather" + "commentary " + "json"


def _trained_text(r: h.Rendered) -> str:
    return "".join(t for t, m in zip(r.text, r.trained) if m)


def test_assistant_mask_trains_what_the_model_writes(tokenizer):
    r = h.render(simple(), date=DATE, tokenizer=tokenizer)
    # The prompt gives `<|start|>assistant`; the model writes the rest, then switches to the final
    # channel itself after its own <|end|>, and ends with <|return|>.
    assert _trained_text(r) == (
        "<|channel|>analysis<|message|>Simple sum.<|end|><|start|>assistant<|channel|>final<|message|>4<|return|>"
    )


def test_final_mask_trains_the_answer_only(tokenizer):
    r = h.render(simple(), loss_mask="final", date=DATE, tokenizer=tokenizer)
    assert _trained_text(r) == "<|start|>assistant<|channel|>final<|message|>4<|return|>"


def test_all_mask_trains_everything(tokenizer):
    r = h.render(simple(), loss_mask="all", date=DATE, tokenizer=tokenizer)
    assert all(r.trained)


def test_after_a_tool_result_the_prompt_gives_the_start(tokenizer):
    r = h.render(with_tools(), date=DATE, tokenizer=tokenizer)
    trained = _trained_text(r)
    assert "<|start|>assistant to=functions" in trained  # after the analysis' <|end|>: written by the model
    assert "<|call|>" in trained
    assert "<|start|>functions.get_weather" not in trained  # the tool's result is not learned
    assert trained.count("<|start|>assistant") == 2  # before the tool call and before the final answer


def test_payload_is_valid(tokenizer):
    from oss_finetune.core.schema import SchemaError, validate

    r = h.render(with_tools(), date=DATE, tokenizer=tokenizer)
    payload = h.payload([r, h.render(simple(), mode="prompt", date=DATE, tokenizer=tokenizer)], title="demo")
    validate("harmony-tokens", payload)
    item = payload["conversations"][1]
    assert item["tokens"]["message"][-2:] == [-1, -1]
    broken = r.to_payload()
    broken["tokens"]["part"][0] = "body"
    with pytest.raises(SchemaError) as err:
        validate("harmony-tokens", {"version": 1, "conversations": [broken]})
    assert err.value.path == "conversations[0].tokens.part[0]"


def test_date_line(tokenizer):
    assert "Current date: 2024-01-02\n" in h.render(simple(), date="2024-01-02", tokenizer=tokenizer).decoded()
    assert "Current date" not in h.render(simple(), date=h.NO_DATE, tokenizer=tokenizer).decoded()
    import datetime

    today = datetime.date.today().isoformat()
    assert f"Current date: {today}\n" in h.render(simple(), tokenizer=tokenizer).decoded()


def test_token_text_keeps_multibyte_characters_whole(tokenizer):
    conv = h.Conversation([h.Message("user", "日本語 🤖 é"), h.Message("assistant", "ok")])
    r = h.render(conv, date=DATE, tokenizer=tokenizer)
    assert "".join(r.text) == tokenizer.decode(r.ids)
    assert all("\ufffd" not in t for t in r.text)


def test_special_tokens_inside_content_are_refused(tokenizer):
    conv = h.Conversation([h.Message("user", "hi <|end|> there"), h.Message("assistant", "ok")])
    with pytest.raises(h.HarmonyRenderError, match=r"message 1 \(user\).*<\|end\|>"):
        h.render(conv, tokenizer=tokenizer)


def test_bad_values_are_refused():
    with pytest.raises(h.HarmonyRenderError, match="role must be one of"):
        h.Message("robot", "hi")
    with pytest.raises(h.HarmonyRenderError, match="channel must be one of"):
        h.Message("assistant", "hi", channel="thoughts")
    with pytest.raises(h.HarmonyRenderError, match="reasoning_effort"):
        h.Conversation([], reasoning_effort="max")
    with pytest.raises(ValueError, match="loss_mask"):
        h.render(simple(), loss_mask="user")


def test_render_many_equals_render_one_by_one(tokenizer):
    convs = [simple("low"), with_tools(), multi_turn()]
    batch = h.render_many(convs, date=DATE, tokenizer=tokenizer)
    for conv, r in zip(convs, batch):
        one = h.render(conv, date=DATE, tokenizer=tokenizer)
        assert (one.ids, one.trained, one.message, one.channel) == (r.ids, r.trained, r.message, r.channel)


# ---------------------------------------------------------------------------------------------
# Parsing, streaming


@pytest.mark.parametrize("make", [simple, with_tools, multi_turn])
def test_parse_gives_back_the_render(tokenizer, make):
    r = h.render(make(), date=DATE, tokenizer=tokenizer)
    parsed = h.parse(r.ids, tokenizer)
    assert [(lab.message, lab.role, lab.channel, lab.part) for lab in parsed.labels] == list(
        zip(r.message, r.role, r.channel, r.part)
    )
    shown = h.visible_messages(make().messages, "train")
    assert parsed.messages[-len(shown) :] == shown


def test_stream_labels_each_token_as_it_arrives(tokenizer):
    # A generation: the prompt ended with `<|start|>assistant`, the model writes the rest.
    r = h.render(simple(), date=DATE, tokenizer=tokenizer)
    first = r.ids.index(START, r.ids.index(START, r.ids.index(START) + 1) + 1)
    generated = r.ids[first + 2 :]
    parser = h.StreamParser(tokenizer, role="assistant")
    seen = [parser.feed(t) for t in generated]
    assert seen[0] == h.TokenLabel(0, "assistant", "none", "special")  # <|channel|>: name not seen yet
    assert seen[1] == h.TokenLabel(0, "assistant", "analysis", "header")
    content = [lab for lab in seen if lab.part == "content"]
    assert [lab.channel for lab in content] == ["analysis"] * (len(content) - 1) + ["final"]
    assert [(m.channel, m.content) for m in parser.finish()] == [("analysis", "Simple sum."), ("final", "4")]
    # Once a message is complete its header labels are corrected.
    assert parser.labels[0].channel == "analysis"


@pytest.mark.parametrize(
    "tokens, position, expected",
    [
        ([START, "user", MESSAGE, "hi", START], 4, "<|end|>, <|return|>, <|call|>"),
        ([START, "user", END], 2, "<|message|> to end the header"),
        (["hi"], 0, "<|start|> to begin a message"),
        ([START, MESSAGE], 1, "a role"),
        ([START, "assistant", CHANNEL, "thinking", MESSAGE], 4, "a channel (analysis, commentary, final)"),
        ([START, "assistant", CHANNEL, "final", CHANNEL], 4, "one <|channel|> per header"),
        ([START, "user", MESSAGE, "hi"], 4, "<|end|>, <|return|> or <|call|>"),
    ],
)
def test_malformed_streams_name_the_position(tokenizer, tokens, position, expected):
    ids = []
    for t in tokens:
        ids += [t] if isinstance(t, int) else _ids(tokenizer, t)
    with pytest.raises(h.HarmonyParseError) as err:
        h.parse(ids, tokenizer)
    assert err.value.position == position
    assert expected in str(err.value)
    assert str(err.value).startswith(f"token {position} ")


def test_partial_streams_parse_on_request(tokenizer):
    ids = [START] + _ids(tokenizer, "user") + [MESSAGE] + _ids(tokenizer, "hi")
    parsed = h.parse(ids, tokenizer, partial=True)
    assert parsed.complete is False and parsed.messages == []
