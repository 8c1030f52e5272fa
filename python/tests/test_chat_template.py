"""The Harmony chat template of exports (core.chat_template) against core.harmony, token for token.

A serving stack hands the template chats in OpenAI's message format; what it renders must be what
core.harmony renders for the same chat read as a data row (core.data), because that is what the model
was fine-tuned on. Each case goes through transformers' real apply_chat_template with the vendored
tokenizer, and through core.data and core.harmony.render, and the two token lists must be equal:

- every row of the embedded tool-calls sample, whole (a training render) and as the prompt after each
  user turn and each tool result;
- the tool schema cases of test_harmony.py (made token-exact with openai-harmony there);
- chats drawn by hypothesis over the tool schemas of test_harmony_fuzz.py, in every shape the chat format
  has: system and developer turns anywhere, reasoning under either name, preambles, parallel calls,
  arguments as JSON text or as objects, results named by `name`, by `tool_call_id` or by the call before.

Text written as special tokens (``<|end|>`` inside a message) is left out of the drawn chats: an engine
tokenizes the rendered text, where core.harmony encodes such text as characters. The same template is
also rendered by Jinja2 without trim_blocks, by llama-cpp-python's formatter when installed, and by minja
(llama.cpp's engine) when MINJA_INCLUDE names a folder holding minja/chat-template.hpp and
nlohmann/json.hpp.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment
from test_harmony import TOOL_CASES
from test_harmony_fuzz import json_values, names, tools

from oss_finetune.core import data, harmony
from oss_finetune.core.chat_template import HARMONY_CHAT_TEMPLATE
from oss_finetune.core.sample_data.tool_calls import TRAIN_FILE
from oss_finetune.core.tokenizer import load_tokenizer

DATE = "2026-12-07"
TOKENIZER = load_tokenizer()
EXAMPLES = int(os.environ.get("CHAT_TEMPLATE_FUZZ_EXAMPLES", "120"))
SAMPLE = [json.loads(line) for line in TRAIN_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def template_ids(messages: list[dict], tools: list | None, prompt: bool, effort: str = "medium") -> list[int]:
    ids = TOKENIZER.apply_chat_template(
        messages,
        tools=tools,
        chat_template=HARMONY_CHAT_TEMPLATE,
        tokenize=True,
        return_dict=False,
        add_generation_prompt=prompt,
        reasoning_effort=effort,
        current_date=DATE,
    )
    return list(ids)


def harmony_render(messages: list[dict], tools: list | None, prompt: bool, effort: str = "medium") -> harmony.Rendered:
    row = data.to_row({"messages": messages, "tools": tools}, 0, "messages", effort, require_assistant=not prompt)
    return harmony.render(row.conversation, mode="prompt" if prompt else "train", date=DATE, tokenizer=TOKENIZER)


def assert_same(messages: list[dict], tools: list | None, prompt: bool, effort: str = "medium") -> None:
    expected = harmony_render(messages, tools, prompt, effort)
    ids = template_ids(messages, tools, prompt, effort)
    if ids != expected.ids:
        assert TOKENIZER.decode(ids) == expected.decoded()  # shows where the text differs
    assert ids == expected.ids


def prompts_of(messages: list[dict]) -> list[list[dict]]:
    """The chat as a server sees it before each assistant turn: up to each user turn or tool result."""
    return [messages[: i + 1] for i, m in enumerate(messages) if m["role"] in ("user", "tool")]


# ---------------------------------------------------------------------------------------------
# The tool-calling sample, and the chats a server is sent


@pytest.mark.parametrize("prompt", [False, True], ids=["whole", "prompts"])
def test_every_sample_row_renders_as_core_harmony_renders_it(prompt):
    assert len(SAMPLE) == 300
    for row in SAMPLE:
        chats = prompts_of(row["messages"]) if prompt else [row["messages"]]
        for messages in chats:
            assert_same(messages, row["tools"], prompt)


def test_a_tool_call_and_its_result_read_as_harmony():
    row = SAMPLE[0]
    text = TOKENIZER.decode(template_ids(row["messages"][:3], row["tools"], prompt=True))
    assert text.startswith("<|start|>system<|message|>")
    assert "# Valid channels: analysis, commentary, final. Channel must be included for every message.\n" in text
    assert "Calls to these tools must go to the commentary channel: 'functions'.<|end|>" in text
    assert "<|start|>developer<|message|># Tools\n\n## functions\n\nnamespace functions {\n\n" in text
    assert (
        "// Convert a value to another unit.\n"
        "type convert_units = (_: {\n"
        "value: number,\n"
        'from_unit: "km" | "mi" | "kg" | "lb" | "C" | "F",\n'
        'to_unit: "km" | "mi" | "kg" | "lb" | "C" | "F",\n'
        "}) => any;\n\n"
    ) in text
    assert text.endswith(
        "<|start|>user<|message|>Can you work out 26 * 21 + 25?<|end|>"
        "<|start|>assistant<|channel|>analysis<|message|>Okay, we need to evaluate 26 * 21 + 25. Call calculate.<|end|>"
        '<|start|>assistant to=functions.calculate<|channel|>commentary <|constrain|>json<|message|>{"expression": "26 * 21 + 25"}<|call|>'
        '<|start|>functions.calculate to=assistant<|channel|>commentary<|message|>{"result": 571}<|end|>'
        "<|start|>assistant"
    )


def test_reasoning_before_a_call_stays_until_the_answer():
    row = SAMPLE[0]["messages"]
    follow_up = [*row, {"role": "user", "content": "And 2 + 2?"}]
    text = TOKENIZER.decode(template_ids(follow_up, SAMPLE[0]["tools"], prompt=True))
    # Answered: the turn's reasoning is gone, its call and result stay.
    assert "<|channel|>analysis" not in text
    assert "to=functions.calculate" in text
    assert_same(follow_up, SAMPLE[0]["tools"], prompt=True)


SERVER_CHAT = [
    {"role": "system", "content": "Use the tools."},
    {"role": "user", "content": "Weather in Paris and in Rome, in celsius?"},
    {
        "role": "assistant",
        "reasoning_content": "Two cities: two calls.",
        "content": "Checking both.",
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "weather", "arguments": {"city": "Rome"}}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_a", "content": {"c": 18}},
    {"role": "tool", "tool_call_id": "call_b", "content": "21"},
]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Current weather.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
                },
                "required": ["city"],
            },
        },
    }
]


def test_parallel_calls_with_ids_reasoning_content_and_object_results():
    assert_same(SERVER_CHAT, WEATHER, prompt=True)
    text = TOKENIZER.decode(template_ids(SERVER_CHAT, WEATHER, prompt=True))
    assert "<|start|>assistant<|channel|>commentary<|message|>Checking both.<|end|>" in text
    assert '<|constrain|>json<|message|>{"city": "Rome"}<|call|>' in text
    assert '<|start|>functions.weather to=assistant<|channel|>commentary<|message|>{"c": 18}<|end|>' in text
    assert 'unit?: "celsius" | "fahrenheit", // default: celsius\n' in text


def test_a_tool_call_id_names_the_call_it_answers():
    # A nameless result's author is the call with its id, which a server always sends, so a result that
    # answers the earlier call of a parallel pair is still right: in the template and in the data path.
    chat = [
        {"role": "user", "content": "Paris weather and the time?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "w", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
                {"id": "t", "type": "function", "function": {"name": "clock", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "t", "content": "12:00"},
        {"role": "tool", "tool_call_id": "w", "content": "sunny"},
    ]
    conversation = harmony.Conversation(
        [
            harmony.Message("user", "Paris weather and the time?"),
            harmony.Message("assistant", "{}", recipient="functions.weather", content_type="<|constrain|>json"),
            harmony.Message("assistant", "{}", recipient="functions.clock", content_type="<|constrain|>json"),
            harmony.Message("tool", "12:00", name="functions.clock"),
            harmony.Message("tool", "sunny", name="functions.weather"),
        ],
        tools=[{"name": "weather"}, {"name": "clock"}],
    )
    expected = harmony.render(conversation, mode="prompt", date=DATE, tokenizer=TOKENIZER)
    assert template_ids(chat, [{"name": "weather"}, {"name": "clock"}], prompt=True) == expected.ids
    from oss_finetune.core.data import to_row

    row = to_row({"messages": chat, "tools": [{"name": "weather"}, {"name": "clock"}]}, 0, require_assistant=False)
    assert [m.name for m in row.conversation.messages if m.role == "tool"] == ["functions.clock", "functions.weather"]


def test_a_whole_conversation_ends_with_return_or_call():
    row = SAMPLE[0]
    whole = TOKENIZER.decode(template_ids(row["messages"], row["tools"], prompt=False))
    assert whole.endswith("<|channel|>final<|message|>The result is 571.<|return|>")
    # Its last turn keeps the reasoning before the call: that is the reasoning being taught.
    assert "<|channel|>analysis<|message|>Okay, we need to evaluate 26 * 21 + 25" in whole
    until_call = TOKENIZER.decode(template_ids(row["messages"][:2], row["tools"], prompt=False))
    assert until_call.endswith('<|constrain|>json<|message|>{"expression": "26 * 21 + 25"}<|call|>')


def test_the_instructions_come_before_the_tools():
    messages = [{"role": "system", "content": "reasoning language: French\n\nBe brief."}, *SAMPLE[0]["messages"]]
    text = TOKENIZER.decode(template_ids(messages, SAMPLE[0]["tools"], prompt=False))
    assert (
        "<|start|>developer<|message|># Instructions\n\nreasoning language: French\n\nBe brief.\n\n# Tools\n\n" in text
    )
    assert_same(messages, SAMPLE[0]["tools"], prompt=False)
    assert_same(messages[:2], SAMPLE[0]["tools"], prompt=True)


@pytest.mark.parametrize(
    "instructions",
    ["  Reasoning Language:  Deutsch \nKurz.", "\nreasoning language: 日本語", "reasoning language:"],
)
def test_instructions_that_name_the_language_after_blank_space(instructions):
    messages = [{"role": "developer", "content": instructions}, {"role": "user", "content": "Hi"}]
    assert_same(messages, None, prompt=True)


def test_without_tools_nothing_about_tools_is_written():
    messages = [{"role": "user", "content": "Hi"}]
    for empty in (None, []):
        text = TOKENIZER.decode(template_ids(messages, empty, prompt=True))
        assert "functions" not in text and "<|start|>developer" not in text
        assert_same(messages, empty, prompt=True)


def test_what_harmony_cannot_hold_is_refused():
    with pytest.raises(jinja2.exceptions.TemplateError, match="function tools only"):
        template_ids([{"role": "user", "content": "Hi"}], [{"type": "retrieval"}], prompt=True)
    with pytest.raises(jinja2.exceptions.TemplateError, match="needs the tool's name"):
        template_ids([{"role": "user", "content": "Hi"}, {"role": "tool", "content": "x"}], None, prompt=True)
    with pytest.raises(jinja2.exceptions.TemplateError, match="not narrator"):
        template_ids([{"role": "narrator", "content": "Once"}], None, prompt=True)


# ---------------------------------------------------------------------------------------------
# Tool schemas: the cases core.harmony was made token-exact on


@pytest.mark.parametrize("case", TOOL_CASES)
def test_tool_schemas_render_as_core_harmony_renders_them(case):
    name = TOOL_CASES[case]["function"]["name"]
    messages = [
        {"role": "system", "content": "Use the tool."},
        {"role": "user", "content": "Do it."},
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": name, "arguments": "{}"}}]},
        {"role": "tool", "content": "done"},
        {"role": "assistant", "content": "Done."},
    ]
    assert_same(messages, [TOOL_CASES[case]], prompt=False)
    assert_same(messages[:4], [TOOL_CASES[case]], prompt=True)


def test_the_schema_cases_the_issue_named():
    def namespace(tool: dict) -> str:
        text = TOKENIZER.decode(template_ids([{"role": "user", "content": "x"}], [tool], prompt=True))
        return text.split("# Tools\n\n", 1)[1].split("<|end|>", 1)[0]

    assert "type do_it = (_: {\n}) => any;" in namespace(TOOL_CASES["empty properties"])
    assert 'unit?: string, // default: "celsius"' in namespace(TOOL_CASES["string default, not an enum"])
    assert 'unit?: "c" | "f", // default: c' in namespace(TOOL_CASES["string default of an enum"])
    assert "level: number,\n" in namespace(TOOL_CASES["integer enum"])
    floats = namespace(TOOL_CASES["float defaults in serde_json's layout"])
    assert "a?: number, // default: 1e20\nb?: number, // default: 0.00001\nc?: number, // default: 1e-7\n" in floats
    nested = namespace(TOOL_CASES["nested objects with descriptions"])
    assert "    geo?:         // Coordinates\n{\n        lat: number,\n" in nested


# ---------------------------------------------------------------------------------------------
# Drawn chats


def _plain(value: Any) -> Any:
    """The value with special-token text broken up (an engine would read it as structure)."""
    if isinstance(value, str):
        return value.replace("<|", "<\u2009|")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


FRAGMENTS = [
    " ",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    "\t",
    "//",
    "{",
    "}",
    '"',
    "\\",
    "é",
    "日本語",
    "🤖",
    "e\u0301",
    "functions.x",
    "reasoning language: French\n",
    "  Reasoning Language:  Deutsch \n",
]
text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(st.characters(exclude_categories=("Cs",)), max_size=6)), max_size=4
).map(lambda parts: _plain("".join(parts)))
plain_tools = tools().map(_plain)
arguments = st.one_of(text, st.dictionaries(names, json_values.map(_plain), max_size=3))


@st.composite
def chats(draw) -> tuple[list[dict], list | None, bool, str]:
    tool_list = draw(st.lists(plain_tools, max_size=3))
    tool_names = [harmony.tool_function(t)["name"] for t in tool_list] or ["lookup"]
    messages: list[dict] = []
    calls: list[tuple[str, str]] = []  # (id, name) of the calls so far
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["user", "user", "answer", "calls", "result", "result", "instructions"]))
        if kind == "user":
            messages.append({"role": "user", "content": draw(text)})
        elif kind == "instructions":
            messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(text)})
        elif kind in ("answer", "calls"):
            message: dict[str, Any] = {"role": "assistant"}
            reasoning = draw(st.sampled_from([None, "thinking", "reasoning_content"]))
            if reasoning:
                message[reasoning] = draw(st.one_of(st.none(), text))
            if kind == "answer":
                message["content"] = draw(text)
            else:
                content = draw(st.sampled_from(["absent", "none", "text"]))
                if content != "absent":
                    message["content"] = draw(text) if content == "text" else None
                message["tool_calls"] = []
                for _ in range(draw(st.integers(1, 2))):
                    call_id, name = f"call_{len(calls)}", draw(st.sampled_from(tool_names))
                    calls.append((call_id, name))
                    fn = {"name": name, "arguments": draw(arguments)}
                    message["tool_calls"].append({"id": call_id, "type": "function", "function": fn})
            messages.append(message)
        elif calls:
            # core.data names a nameless result after the call before it, so an id names that call here.
            result: dict[str, Any] = {"role": "tool", "content": draw(st.one_of(text, st.dictionaries(names, text)))}
            how = draw(st.sampled_from(["name", "prefixed name", "id", "none"]))
            if how == "name":
                result["name"] = draw(st.sampled_from(tool_names))
            elif how == "prefixed name":
                result["name"] = "functions." + draw(st.sampled_from(tool_names))
            elif how == "id":
                result["tool_call_id"] = calls[-1][0]
            messages.append(result)
    return (
        messages,
        tool_list or draw(st.sampled_from([None, []])),
        draw(st.booleans()),
        draw(st.sampled_from(harmony.EFFORTS)),
    )


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("HARMONY_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(case=chats())
def test_drawn_chats_render_as_core_harmony_renders_them(case):
    messages, tool_list, prompt, effort = case
    try:
        expected = harmony_render(messages, tool_list, prompt, effort)
    except data.BadRowError:
        assume(False)  # no row core.data would accept: a training chat without an assistant turn
    assert not expected.special_text
    ids = template_ids(messages, tool_list, prompt, effort)
    if ids != expected.ids:
        assert TOKENIZER.decode(ids) == expected.decoded()
    assert ids == expected.ids


# ---------------------------------------------------------------------------------------------
# Other engines: the same text


def _cases() -> list[dict]:
    """Chats with their options, as JSON, for engines that are not transformers."""
    out = []
    for row in SAMPLE[:40]:
        out.append({"messages": row["messages"], "tools": row["tools"], "add_generation_prompt": False})
        for messages in prompts_of(row["messages"]):
            out.append({"messages": messages, "tools": row["tools"], "add_generation_prompt": True})
    out.append({"messages": SERVER_CHAT, "tools": WEATHER, "add_generation_prompt": True})
    for case in TOOL_CASES.values():
        out.append({"messages": [{"role": "user", "content": "x"}], "tools": [case], "add_generation_prompt": True})
    for case in out:
        case["extra"] = {"reasoning_effort": "low", "current_date": DATE}
    return out


def _by_transformers(case: dict) -> str:
    text: str = TOKENIZER.apply_chat_template(
        case["messages"],
        tools=case["tools"],
        chat_template=HARMONY_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=case["add_generation_prompt"],
        **case["extra"],
    )
    return text


def test_jinja2_without_trim_blocks_renders_the_same():
    env = ImmutableSandboxedEnvironment(trim_blocks=False, lstrip_blocks=False)
    env.filters["tojson"] = lambda x: json.dumps(x, ensure_ascii=False)

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    template = env.from_string(HARMONY_CHAT_TEMPLATE)
    for case in _cases():
        text = template.render(
            messages=case["messages"],
            tools=case["tools"],
            add_generation_prompt=case["add_generation_prompt"],
            raise_exception=raise_exception,
            **case["extra"],
        )
        assert text == _by_transformers(case)


def test_llama_cpp_pythons_formatter_renders_the_same():
    chat_format = pytest.importorskip("llama_cpp.llama_chat_format")
    for case in _cases():
        formatter = chat_format.Jinja2ChatFormatter(
            HARMONY_CHAT_TEMPLATE,
            eos_token="<|return|>",
            bos_token="",
            add_generation_prompt=case["add_generation_prompt"],
        )
        text = formatter(messages=case["messages"], tools=case["tools"], **case["extra"]).prompt
        assert text == _by_transformers(case)


MINJA_RENDER = r"""
#include <iostream>
#include <sstream>
#include <minja/chat-template.hpp>

// Reads {"template", "cases": [{"messages", "tools", "add_generation_prompt", "extra"}]} and writes the
// renders as llama.cpp makes them: minja's chat_template with its default options.
int main() {
    std::stringstream input;
    input << std::cin.rdbuf();
    auto request = nlohmann::ordered_json::parse(input.str());
    minja::chat_template tmpl(request["template"].get<std::string>(), "", "<|return|>");
    auto out = nlohmann::ordered_json::array();
    for (const auto & c : request["cases"]) {
        minja::chat_template_inputs inputs;
        inputs.messages = c["messages"];
        inputs.tools = c["tools"];
        inputs.add_generation_prompt = c["add_generation_prompt"].get<bool>();
        inputs.extra_context = c["extra"];
        try {
            out.push_back(tmpl.apply(inputs));
        } catch (const std::exception & e) {
            out.push_back({{"error", e.what()}});
        }
    }
    std::cout << out.dump() << std::endl;
}
"""


def test_minja_renders_the_same(tmp_path):
    include = os.environ.get("MINJA_INCLUDE")
    if not include or not (Path(include) / "minja" / "chat-template.hpp").is_file():
        pytest.skip("MINJA_INCLUDE names no folder with minja/chat-template.hpp and nlohmann/json.hpp")
    compiler = shutil.which("g++") or shutil.which("clang++")
    if compiler is None:
        pytest.skip("no C++ compiler")
    source = tmp_path / "render.cpp"
    source.write_text(MINJA_RENDER)
    binary = tmp_path / "render"
    subprocess.run([compiler, "-std=c++17", "-O1", "-I", include, str(source), "-o", str(binary)], check=True)
    cases = _cases()
    request = json.dumps({"template": HARMONY_CHAT_TEMPLATE, "cases": cases}, ensure_ascii=False)
    done = subprocess.run([str(binary)], input=request, capture_output=True, text=True, check=True)
    for case, text in zip(cases, json.loads(done.stdout), strict=True):
        assert text == _by_transformers(case)
