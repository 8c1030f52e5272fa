"""Generated conversations, each rendered token-exact against openai-harmony and parsed back.

Hypothesis draws conversations over every role, channel, recipient, content type, reasoning effort,
tool schema and awkward text (special-token text, line endings, emoji, combining marks, empty
strings). Each one must render to openai-harmony's ids (given the messages we show, as in
test_harmony.py), and our parser must give back the messages and the labels of the render. The
examples are derandomized, so a failure is the same on every machine; HARMONY_FUZZ_EXAMPLES raises
their number for a longer local run, and HARMONY_FUZZ_RANDOM=1 draws new ones each run.
"""

from __future__ import annotations

import os

import pytest
from harmony_reference import DATE, as_reference_tuples, openai_harmony_ids, parsed_by_openai_harmony
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oss_finetune.core import harmony as h
from oss_finetune.core.tokenizer import SPECIAL_TOKENS, load_tokenizer

TOKENIZER = load_tokenizer()
EXAMPLES = int(os.environ.get("HARMONY_FUZZ_EXAMPLES", "150"))

FRAGMENTS = [
    *SPECIAL_TOKENS,
    "<|reserved_200013|>",
    "<|",
    "|>",
    "<|start",
    "to=functions.x",
    "<|channel|>final",
    " ",
    "  ",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    "\t",
    "//",
    "}",
    "{",
    '"',
    "\\",
    "é",
    "ß",
    "日本語",
    "🤖",
    "👩‍👩‍👧",
    "e\u0301",
    "\u200b",
    "\u202e",
    "١٢٣",
    "123456789",
    "Reasoning: high",
    "# Tools",
]

# Every character but lone surrogates, which no UTF-8 text can hold.
chars = st.characters(exclude_categories=("Cs",))
text = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(chars, max_size=6)), max_size=5).map("".join)
word = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,10}", fullmatch=True)
small_ints = st.integers(-1000, 10**6)
# Floats whose digits survive openai-harmony's JSON reading (it may round the last digit of others;
# docs/harmony.md), in every layout serde_json writes: "1e20", "0.00001", "2.5e-10", "3.0".
floats = st.sampled_from([0.5, -1.5, 3.0, -0.0, 0.1, 1e15, 1e16, 1e20, 1e-4, 1e-5, 1e-7, 2.5e-10, 12345678.9])
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), small_ints, floats, text),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(word, inner, max_size=3)),
    max_leaves=5,
)


def _with(base: dict, **optional) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries(base, optional=optional)


common = {
    "description": text,
    "title": text,
    "nullable": st.booleans(),
    "examples": st.lists(st.one_of(text, small_ints), max_size=2),
}
leaf_schemas = st.one_of(
    _with(
        {"type": st.just("string")},
        enum=st.lists(st.one_of(word, small_ints), max_size=3),
        default=st.one_of(text, word),
        **common,
    ),
    _with(
        {"type": st.sampled_from(["integer", "number"])},
        enum=st.lists(small_ints, max_size=3),
        default=st.one_of(small_ints, floats),
        **common,
    ),
    _with({"type": st.just("boolean")}, default=st.booleans(), **common),
    _with(
        {"type": st.lists(st.sampled_from(["integer", "number", "string", "boolean", "null"]), max_size=3)},
        default=json_values,
    ),
    _with({"enum": st.lists(word, min_size=1, max_size=3)}, default=word),
    _with({}, default=json_values, description=text),
)


def _containers(inner: st.SearchStrategy[dict]) -> st.SearchStrategy[dict]:
    props = st.dictionaries(names, inner, max_size=4)
    return st.one_of(
        _with({"type": st.just("object")}, properties=props, required=st.lists(names, max_size=3), **common),
        _with({"type": st.just("array")}, items=inner, **common),
        _with({"oneOf": st.lists(inner, max_size=3)}, default=json_values, description=text),
    )


schemas = st.recursive(leaf_schemas, _containers, max_leaves=8)
parameters = st.one_of(
    st.none(),
    st.just({}),
    schemas,
    _with(
        {"type": st.just("object"), "properties": st.dictionaries(names, schemas, max_size=4)},
        required=st.lists(names, max_size=3),
        description=text,
    ),
)


@st.composite
def tools(draw) -> dict:
    fn = {"name": draw(names), "description": draw(text)}
    params = draw(parameters)
    if params is not None or draw(st.booleans()):
        fn["parameters"] = params
    return {"type": "function", "function": fn} if draw(st.booleans()) else fn


@st.composite
def conversations(draw) -> tuple[h.Conversation, str]:
    tool_list = draw(st.lists(tools(), max_size=3))
    tool_names = [h.tool_function(t)["name"] for t in tool_list] or ["lookup"]
    messages: list[h.Message] = []
    if draw(st.integers(0, 9)) == 0:
        messages.append(h.Message("system", draw(text)))
    if draw(st.integers(0, 9)) == 0:
        messages.append(h.Message("developer", draw(text)))
    last_call = None
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["user", "analysis", "final", "preamble", "call", "result", "result"]))
        content = draw(text)
        if kind == "user":
            messages.append(h.Message("user", content))
        elif kind in ("analysis", "final"):
            messages.append(h.Message("assistant", content, channel=kind))
        elif kind == "preamble":
            messages.append(h.Message("assistant", content, channel="commentary"))
        elif kind == "call":
            last_call = (
                f"{draw(st.sampled_from(['functions', 'browser', 'python']))}.{draw(st.sampled_from(tool_names))}"
            )
            messages.append(
                h.Message(
                    "assistant",
                    content,
                    channel=draw(st.sampled_from(["commentary", "analysis"])),
                    recipient=last_call,
                    content_type=draw(st.sampled_from([None, "<|constrain|>json", "json", "<|constrain|>yaml"])),
                )
            )
        else:
            if last_call is None:
                last_call = f"functions.{draw(st.sampled_from(tool_names))}"
                messages.append(h.Message("assistant", draw(text), recipient=last_call))
            messages.append(h.Message("tool", content, name=last_call))
    conv = h.Conversation(
        messages,
        reasoning_effort=draw(st.sampled_from(h.EFFORTS)),
        developer_instructions=draw(st.one_of(st.none(), text)),
        reasoning_language=draw(st.one_of(st.none(), st.sampled_from(["French", "日本語", "Deutsch"]))),
        tools=tool_list or None,
    )
    return conv, draw(st.sampled_from(h.MODES))


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("HARMONY_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(case=conversations(), mask=st.sampled_from(h.LOSS_MASKS))
def test_generated_conversations_render_like_openai_harmony_and_parse_back(case, mask):
    conv, mode = case
    ours = h.render(conv, mode=mode, loss_mask=mask, date=DATE, tokenizer=TOKENIZER)
    assert ours.ids == openai_harmony_ids(conv, mode)
    assert len(ours.trained) == len(ours.ids) == len(ours.part)

    # The round trip: a prompt ends inside the header of the turn to write, so it is parsed partially.
    parsed = h.parse(ours.ids, TOKENIZER, partial=mode == "prompt")
    shown = h.visible_messages(conv.messages, mode)
    rendered = parsed.messages[len(parsed.messages) - len(shown) :] if shown else []
    assert rendered == shown
    labels = [(lab.message, lab.role, lab.channel, lab.part) for lab in parsed.labels]
    expected = list(zip(ours.message, ours.role, ours.channel, ours.part))
    if mode == "prompt":
        # The closing `<|start|>assistant` is no message yet for the parser.
        labels, expected = labels[:-2], expected[:-2]
    assert labels == expected
    assert "".join(ours.text) == TOKENIZER.decode(ours.ids)


@FUZZ
@given(case=conversations())
def test_the_strict_option_refuses_exactly_what_the_default_encodes_as_text(case):
    conv, mode = case
    ours = h.render(conv, mode=mode, date=DATE, tokenizer=TOKENIZER)
    if ours.special_text:
        with pytest.raises(h.HarmonyRenderError, match="special token"):
            h.render(conv, mode=mode, date=DATE, tokenizer=TOKENIZER, special_tokens="error")
    else:
        assert h.render(conv, mode=mode, date=DATE, tokenizer=TOKENIZER, special_tokens="error").ids == ours.ids


@FUZZ
@given(case=conversations(), cut=st.floats(0, 1))
def test_streams_and_cut_streams_parse_as_openai_harmony_parses_them(case, cut):
    conv, _ = case
    ids = h.render(conv, mode="train", date=DATE, tokenizer=TOKENIZER).ids
    assert as_reference_tuples(h.parse(ids, TOKENIZER).messages) == parsed_by_openai_harmony(ids)
    # Cut anywhere: inside a content openai-harmony returns the message so far, as partial=True does;
    # inside a header it fails, as our parser does without partial.
    stream = ids[: int(cut * len(ids))]
    try:
        theirs = parsed_by_openai_harmony(stream)
    except Exception:
        with pytest.raises(h.HarmonyParseError, match="to end the header"):
            h.parse(stream, TOKENIZER)
        return
    assert as_reference_tuples(h.parse(stream, TOKENIZER, partial=True).messages) == theirs
