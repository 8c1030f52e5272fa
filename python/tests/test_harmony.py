"""Harmony at token level, checked token by token against the two references.

The references: openai-harmony (OpenAI's library for the format) and the gpt-oss chat template that
TRL ships (what `tokenizer.apply_chat_template` renders). Where they disagree, docs/harmony.md says
which one we follow; the tests below pin each disagreement down exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harmony_reference import DATE, ENC, as_reference_tuples, oh, openai_harmony_ids, parsed_by_openai_harmony

from oss_finetune.core import harmony as h
from oss_finetune.core.data import to_row
from oss_finetune.core.tokenizer import CALL, CHANNEL, END, MESSAGE, RETURN, START


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
# Reference renderers (openai-harmony's: harmony_reference.py)


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


def test_special_tokens_inside_content_are_refused_when_strict(tokenizer):
    conv = h.Conversation([h.Message("user", "hi <|end|> there"), h.Message("assistant", "ok")])
    with pytest.raises(h.HarmonyRenderError, match=r"message 1 \(user\).*<\|end\|>"):
        h.render(conv, tokenizer=tokenizer, special_tokens="error")


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


def test_partial_streams_return_the_cut_off_message_as_openai_harmony_does(tokenizer):
    # A whole stream cut inside the content of its last message.
    ids = [START] + _ids(tokenizer, "user") + [MESSAGE] + _ids(tokenizer, "hi there")
    parsed = h.parse(ids, tokenizer, partial=True)
    assert parsed.complete is False
    assert as_reference_tuples(parsed.messages) == parsed_by_openai_harmony(ids)
    assert [m.content for m in parsed.messages] == ["hi there"]
    # A generation that hit its token limit inside the final answer, after a complete analysis.
    r = h.render(simple(), date=DATE, tokenizer=tokenizer)
    first = r.ids.index(START, r.ids.index(START, r.ids.index(START) + 1) + 1)
    generated = r.ids[first + 2 : -1]  # without the closing <|return|>
    parsed = h.parse(generated, tokenizer, role="assistant", partial=True)
    assert as_reference_tuples(parsed.messages) == parsed_by_openai_harmony(generated, "assistant")
    assert [(m.channel, m.content) for m in parsed.messages] == [("analysis", "Simple sum."), ("final", "4")]
    # The cut-off message's header tokens are labelled with its role and channel.
    assert parsed.labels[-2] == h.TokenLabel(1, "assistant", "final", "special")


def test_partial_stream_cut_in_a_header_keeps_the_complete_messages(tokenizer):
    ids = (
        [START]
        + _ids(tokenizer, "user")
        + [MESSAGE]
        + _ids(tokenizer, "hi")
        + [END, START]
        + _ids(tokenizer, "assistant")
    )
    parsed = h.parse(ids, tokenizer, partial=True)
    assert [m.content for m in parsed.messages] == ["hi"] and parsed.complete is False
    # Without partial it is an error, as openai-harmony's is.
    with pytest.raises(h.HarmonyParseError, match="expected <\\|message\\|> to end the header"):
        h.parse(ids, tokenizer)
    with pytest.raises(Exception, match="EOS"):
        ENC.parse_messages_from_completion_tokens(ids, None)


def test_finish_partial_leaves_the_parser_able_to_go_on(tokenizer):
    parser = h.StreamParser(tokenizer, role="assistant")
    for t in [CHANNEL, *_ids(tokenizer, "final"), MESSAGE, *_ids(tokenizer, "Hel")]:
        parser.feed(t)
    assert [m.content for m in parser.finish(partial=True)] == ["Hel"]
    for t in [*_ids(tokenizer, "lo"), RETURN]:
        parser.feed(t)
    assert [m.content for m in parser.finish()] == ["Hello"]


@pytest.mark.parametrize("bad", [-1, -(2**40), 200019, 201087, 10**12])
@pytest.mark.parametrize("where", ["outside", "header", "content"])
def test_out_of_range_ids_are_positioned_parse_errors(tokenizer, bad, where):
    before = {
        "outside": [],
        "header": [START] + _ids(tokenizer, "user"),
        "content": [START] + _ids(tokenizer, "user") + [MESSAGE],
    }[where]
    with pytest.raises(h.HarmonyParseError) as err:
        h.parse(before + [bad], tokenizer, partial=True)
    assert isinstance(err.value, ValueError)
    assert err.value.position == len(before)
    assert str(err.value).startswith(f"token {len(before)} (id {bad})")
    assert "a token id from 0 to 200018" in str(err.value)


# ---------------------------------------------------------------------------------------------
# Tools: the schema rendering, case by case, token-exact with openai-harmony


def _tool(parameters=..., description: str = "Does it.", name: str = "do_it") -> dict:
    fn: dict = {"name": name, "description": description}
    if parameters is not ...:
        fn["parameters"] = parameters
    return {"type": "function", "function": fn}


def _obj(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, **extra}


TOOL_CASES = {
    "no parameters": _tool(),
    "parameters null": _tool(None),
    "parameters without a type": _tool({}),
    "empty properties": _tool(_obj({})),
    "object without properties": _tool({"type": "object"}),
    "string default, not an enum": _tool(_obj({"unit": {"type": "string", "default": "celsius"}})),
    "string default of an enum": _tool(_obj({"unit": {"type": "string", "enum": ["c", "f"], "default": "c"}})),
    "integer enum": _tool(_obj({"level": {"type": "integer", "enum": [1, 2, 3]}}, required=["level"])),
    "enum without a type": _tool(_obj({"mode": {"enum": ["a", "b"]}})),
    "mixed string enum": _tool(_obj({"mode": {"type": "string", "enum": ["a", 1, None]}})),
    "number, boolean and object defaults": _tool(
        _obj(
            {
                "n": {"type": "number", "default": 3},
                "b": {"type": "boolean", "default": False},
                "o": {"type": "object", "default": {"k": [1, "x"]}},
                "z": {"type": "string", "default": None},
            }
        )
    ),
    "float defaults in serde_json's layout": _tool(
        _obj(
            {
                k: {"type": "number", "default": v}
                for k, v in {"a": 1e20, "b": 1e-5, "c": 1e-7, "d": 3.0, "e": 2.5e-10}.items()
            }
        )
    ),
    "nested objects with descriptions": _tool(
        _obj(
            {
                "address": _obj(
                    {
                        "city": {"type": "string", "description": "City name"},
                        "geo": _obj(
                            {"lat": {"type": "number"}, "lon": {"type": "number"}},
                            description="Coordinates",
                            required=["lat", "lon"],
                        ),
                    },
                    description="Where to deliver",
                    required=["city"],
                ),
                "note": {"type": "string"},
            },
            description="The order",
            required=["address"],
        )
    ),
    "arrays": _tool(
        _obj(
            {
                "tags": {"type": "array", "items": {"type": "string"}},
                "any": {"type": "array"},
                "points": {"type": "array", "items": _obj({"x": {"type": "integer"}}, description="A point")},
            }
        )
    ),
    "type lists and nullable": _tool(
        _obj(
            {
                "id": {"type": ["integer", "string", "null"], "default": -1},
                "q": {"type": "string", "nullable": True},
                "r": {"type": ["string", "null"], "nullable": True},
            }
        )
    ),
    "title and examples": _tool(_obj({"q": {"type": "string", "title": "Query", "examples": ["cats", 3, "dogs"]}})),
    "oneOf property": _tool(
        _obj(
            {
                "when": {
                    "description": "When",
                    "default": "now",
                    "oneOf": [
                        {"type": "string", "description": "ISO date"},
                        {"type": "integer", "description": "Epoch", "default": 0, "nullable": True},
                        {"type": "string", "enum": ["now"], "default": "now"},
                    ],
                },
                "same": {
                    "description": "Same",
                    "oneOf": [{"type": "string", "description": "Same"}, {"type": "number", "description": "Same"}],
                },
            }
        )
    ),
    "oneOf parameters": _tool(
        {"oneOf": [_obj({"a": {"type": "string"}}, description="A"), {"type": "string", "enum": ["x"], "default": "x"}]}
    ),
    "multi-line description": _tool(description="First line.\r\nSecond line.\n\nFourth line.\n"),
    "empty description": _tool(_obj({"a": {"type": "string"}}), description=""),
    "quotes and newlines in text": _tool(
        _obj({"s": {"type": "string", "description": 'He said "hi"\nthen left', "default": 'a "b"\nc'}})
    ),
}


def _tool_conversation(tool: dict) -> h.Conversation:
    name = tool["function"]["name"]
    return h.Conversation(
        [
            h.Message("user", "Do it."),
            h.Message("assistant", "{}", recipient=f"functions.{name}", content_type="<|constrain|>json"),
            h.Message("tool", "done", name=f"functions.{name}"),
            h.Message("assistant", "Done."),
        ],
        developer_instructions="Use the tool.",
        tools=[tool],
    )


@pytest.mark.parametrize("case", TOOL_CASES)
def test_tool_schemas_match_openai_harmony(tokenizer, case):
    conv = _tool_conversation(TOOL_CASES[case])
    ours = h.render(conv, date=DATE, tokenizer=tokenizer)
    if ours.ids != openai_harmony_ids(conv):
        expected = tokenizer.decode(openai_harmony_ids(conv))
        assert ours.decoded() == expected  # shows the text difference
    assert ours.ids == openai_harmony_ids(conv)


def test_tool_schema_cases_read_as_openai_harmony_writes_them():
    # The four cases the issue named, spelled out so that a reader sees the format.
    ns = h.tools_namespace
    assert "type do_it = (_: {\n}) => any;" in ns([TOOL_CASES["empty properties"]])
    assert 'unit?: string, // default: "celsius"' in ns([TOOL_CASES["string default, not an enum"]])
    assert 'unit?: "c" | "f", // default: c' in ns([TOOL_CASES["string default of an enum"]])
    assert "level: number,\n" in ns([TOOL_CASES["integer enum"]])
    floats = ns([TOOL_CASES["float defaults in serde_json's layout"]])
    assert "a?: number, // default: 1e20\nb?: number, // default: 0.00001\nc?: number, // default: 1e-7\n" in floats
    nested = ns([TOOL_CASES["nested objects with descriptions"]])
    assert (
        "type do_it = (_: // The order\n{\n"
        "// Where to deliver\n"
        "address:     // Where to deliver\n{\n"
        "    // City name\n"
        "    city: string,\n"
        "    // Coordinates\n"
        "    geo?:         // Coordinates\n{\n"
        "        lat: number,\n"
        "        lon: number,\n"
        "        },\n"
        "    },\n"
        "note?: string,\n"
        "}) => any;"
    ) in nested


def test_tools_are_checked_when_rendered(tokenizer):
    with pytest.raises(h.HarmonyRenderError, match=r"tools\[0\]: a function tool needs a name"):
        h.render(h.Conversation([h.Message("user", "hi")], tools=[{"description": "x"}]), tokenizer=tokenizer)
    with pytest.raises(h.HarmonyRenderError, match=r"tools\[1\]: name 'a b' must be one word"):
        h.render(h.Conversation([h.Message("user", "hi")], tools=[_tool(), _tool(name="a b")]), tokenizer=tokenizer)


# ---------------------------------------------------------------------------------------------
# Special-token text, empty answers, prompts without an answer


def test_special_token_text_is_encoded_as_text_like_openai_harmony(tokenizer):
    pasted = "log: <|endoftext|> then <|start|>user<|message|>hi<|end|> and <|reserved_200013|>"
    conv = h.Conversation(
        [h.Message("user", pasted), h.Message("assistant", "It says <|return|>.")],
        developer_instructions="Never write <|call|>.",
    )
    ours = h.render(conv, date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(conv)
    assert ours.special_text == [1, 2, 3]  # the developer message, the user's and the answer
    # As text, so the structure is the real one alone: 4 messages, 4 starts.
    assert ours.ids.count(START) == 4 and ours.ids.count(END) == 3
    parsed = h.parse(ours.ids, tokenizer)
    assert [m.content for m in parsed.messages[2:]] == [pasted, "It says <|return|>."]
    assert h.render(simple(), date=DATE, tokenizer=tokenizer).special_text == []


def test_special_token_text_in_a_header_is_still_refused(tokenizer):
    with pytest.raises(h.HarmonyRenderError, match="recipient .*special token <\\|end\\|>"):
        h.Message("assistant", "{}", recipient="functions.x<|end|>")
    conv = h.Conversation(
        [h.Message("user", "hi"), h.Message("assistant", "{}", recipient="functions.<|reserved_200013|>")]
    )
    with pytest.raises(
        h.HarmonyRenderError,
        match=r"message 2 \(assistant\): the header contains the special token <\|reserved_200013\|>",
    ):
        h.render(conv, tokenizer=tokenizer)


def test_an_empty_final_answer_is_rendered(tokenizer):
    conv = h.Conversation(
        [
            h.Message("user", "Say nothing."),
            h.Message("assistant", "Nothing.", channel="analysis"),
            h.Message("assistant", ""),
        ]
    )
    ours = h.render(conv, date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(conv)
    assert ours.decoded().endswith("<|start|>assistant<|channel|>final<|message|><|return|>")
    assert _trained_text(ours).endswith("<|channel|>final<|message|><|return|>")
    assert h.parse(ours.ids, tokenizer).messages[-1] == h.Message("assistant", "", channel="final")


def test_a_prompt_needs_no_assistant_turn(tokenizer):
    conv = h.Conversation([h.Message("user", "Capital of Italy?")], reasoning_effort="low", tools=[WEATHER_TOOL])
    ours = h.render(conv, mode="prompt", date=DATE, tokenizer=tokenizer)
    assert ours.ids == openai_harmony_ids(conv, mode="prompt")
    assert ours.decoded().endswith("<|start|>user<|message|>Capital of Italy?<|end|><|start|>assistant")


# ---------------------------------------------------------------------------------------------
# Loss policies for tool data


def test_calls_and_final_policy_trains_the_calls_and_answers_not_the_reasoning(tokenizer):
    r = h.render(with_tools(), loss_mask="calls_and_final", date=DATE, tokenizer=tokenizer)
    assert _trained_text(r) == (
        '<|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{"location": "Paris"}<|call|>'
        "<|start|>assistant<|channel|>final<|message|>21 °C and clear.<|return|>"
    )
    assert r.ids == h.render(with_tools(), date=DATE, tokenizer=tokenizer).ids  # the policy changes the mask only


def test_each_policy_on_tool_data(tokenizer):
    def trained(mask):
        r = h.render(with_tools(), loss_mask=mask, date=DATE, tokenizer=tokenizer)
        return {(r.channel[i], r.part[i]) for i, t in enumerate(r.trained) if t and r.part[i] == "content"}

    assert trained("assistant") == {("analysis", "content"), ("commentary", "content"), ("final", "content")}
    assert trained("calls_and_final") == {("commentary", "content"), ("final", "content")}
    assert trained("final") == {("final", "content")}
    # A commentary preamble (no recipient) is written by the model, so it is trained as a call is.
    conv = h.Conversation(
        [
            h.Message("user", "q"),
            h.Message("assistant", "Let me check.", channel="commentary"),
            h.Message("assistant", "a"),
        ]
    )
    r = h.render(conv, loss_mask="calls_and_final", date=DATE, tokenizer=tokenizer)
    assert _trained_text(r) == (
        "<|channel|>commentary<|message|>Let me check.<|end|><|start|>assistant<|channel|>final<|message|>a<|return|>"
    )
