"""training.tool_calls: held-out requests become prompts with their tools, and a generation is judged as
a Harmony tool call: well-formed, the right tool, arguments valid against the tool's JSON Schema."""

import json

import pytest

from oss_finetune.core.data import BadRowError, read_rows
from oss_finetune.core.harmony import render
from oss_finetune.training.tool_calls import CallRequest, call_requests, judge, tool_call_rate

ROWS = 6


@pytest.fixture(scope="module")
def heldout():
    return read_rows("embedded:tool-calls-heldout", limit=ROWS)


@pytest.fixture(scope="module")
def requests(heldout, tokenizer):
    found, skipped = call_requests(heldout, tokenizer)
    assert skipped == 0
    return found


def reply(tokenizer, text: str) -> list[int]:
    """What a model would write after the prompt's `<|start|>assistant`."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def a_call(name: str, arguments, reasoning: str = "Use the tool.") -> str:
    body = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return (
        f"<|channel|>analysis<|message|>{reasoning}<|end|>"
        f"<|start|>assistant to=functions.{name}<|channel|>commentary <|constrain|>json<|message|>{body}<|call|>"
    )


def convert_request(requests) -> CallRequest:
    return next(r for r in requests if r.tool == "convert_units")


def test_a_request_is_the_conversation_up_to_the_call_with_its_tools(heldout, requests, tokenizer):
    assert [r.row for r in requests] == list(range(ROWS))
    request = requests[1]
    row = heldout[1]
    turns = row["messages"][-4:]  # user, call, result, answer; a system turn may come first
    call = turns[1]["tool_calls"][0]["function"]
    assert (request.tool, request.arguments, request.language) == (call["name"], call["arguments"], row["language"])
    assert set(request.schemas) == {"calculate", "convert_units", "get_capital"}
    text = tokenizer.decode(request.prompt)
    assert text.endswith(f"<|start|>user<|message|>{turns[0]['content']}<|end|><|start|>assistant")
    assert "namespace functions {" in text and "Calls to these tools must go to the commentary channel" in text
    # The prompt is the start of what training renders for the same row.
    from oss_finetune.core.data import to_row

    trained = render(to_row(row, 1).conversation, mode="train", date="2025-06-28", tokenizer=tokenizer).ids
    assert trained[: len(request.prompt)] == request.prompt


def test_the_expected_call_is_right_valid_and_exact(requests, tokenizer):
    request = convert_request(requests)
    verdict = judge(reply(tokenizer, a_call(request.tool, request.arguments)), request, tokenizer)
    assert verdict.well_formed and verdict.right_tool and verdict.valid_arguments and verdict.exact_arguments
    assert verdict.right_and_valid and verdict.failure is None and verdict.arguments == request.arguments


def test_other_arguments_that_fit_the_schema_are_valid_but_not_exact(requests, tokenizer):
    request = convert_request(requests)
    arguments = dict(request.arguments, value=request.arguments["value"] + 1)
    verdict = judge(reply(tokenizer, a_call(request.tool, arguments)), request, tokenizer)
    assert verdict.right_and_valid and not verdict.exact_arguments


def test_the_wrong_tool_is_well_formed_but_not_right(requests, tokenizer):
    request = convert_request(requests)
    verdict = judge(reply(tokenizer, a_call("calculate", {"expression": "1 + 1"})), request, tokenizer)
    assert verdict.well_formed and verdict.valid_arguments and not verdict.right_tool
    assert verdict.failure == "the wrong tool" and verdict.tool == "calculate"


def test_arguments_off_the_schema_name_the_field(requests, tokenizer):
    request = convert_request(requests)
    for arguments, field in (
        (dict(request.arguments, value="twelve"), "value"),
        (dict(request.arguments, to_unit="parsec"), "to_unit"),
        ({"value": 3, "from_unit": "km"}, "arguments"),
    ):
        verdict = judge(reply(tokenizer, a_call(request.tool, arguments)), request, tokenizer)
        assert verdict.well_formed and verdict.right_tool and not verdict.valid_arguments
        assert verdict.failure == "arguments off the schema" and verdict.error.startswith(
            f"arguments off the schema: {field}"
        )


@pytest.mark.parametrize(
    "text, failure",
    [
        (
            "<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>42<|return|>",
            "answered without a call",
        ),
        ("<|channel|>analysis<|message|>Let me think about", "no call before the token limit"),
        (
            '<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.convert_units<|channel|>commentary <|constrain|>json<|message|>{"value": 1',
            "a call not ended by <|call|>",
        ),
        (
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.convert_units<|channel|>commentary <|constrain|>json<|message|>{value: 1}<|call|>",
            "arguments that are not JSON",
        ),
        (
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.convert_units<|channel|>commentary <|constrain|>json<|message|>[1, 2]<|call|>",
            "arguments that are not a JSON object",
        ),
        (
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.convert_units<|channel|>commentary<|message|>{}<|call|>",
            "no JSON content type",
        ),
        (
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=browser.search<|channel|>commentary <|constrain|>json<|message|>{}<|call|>",
            "not addressed to functions.NAME",
        ),
        (
            "<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary <|constrain|>json<|message|>{}<|call|>",
            "a tool that is not offered",
        ),
        ("<|channel|>analysis<|start|>", "not Harmony"),
    ],
)
def test_what_is_not_a_good_call_says_why(requests, tokenizer, text, failure):
    verdict = judge(reply(tokenizer, text), convert_request(requests), tokenizer)
    assert verdict.failure == failure, verdict.error
    assert not verdict.right_and_valid


def test_rows_without_a_call_are_left_out_and_broken_rows_are_named(heldout, tokenizer):
    no_call = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    found, skipped = call_requests([heldout[0], no_call], tokenizer)
    assert len(found) == 1 and skipped == 1

    unoffered = json.loads(json.dumps(heldout[0]))
    unoffered["tools"] = unoffered["tools"][1:]
    with pytest.raises(
        BadRowError, match=r"^row 0, field tools: the row calls calculate, which its tools do not offer"
    ):
        call_requests([unoffered], tokenizer)

    broken = json.loads(json.dumps(heldout[1]))
    broken["tools"][1]["function"]["parameters"]["properties"]["value"]["type"] = "decimal"
    with pytest.raises(BadRowError, match=r"^row 0, field tools\[1\]\.function\.parameters: not a valid JSON Schema"):
        call_requests([broken], tokenizer)


def test_the_data_sets_tools_serve_rows_without_their_own(heldout, tokenizer):
    bare = {k: v for k, v in heldout[0].items() if k != "tools"}
    found, _ = call_requests([bare], tokenizer, tools=heldout[0]["tools"])
    assert found[0].tool == "calculate" and "calculate" in found[0].schemas


@pytest.mark.usefixtures("one_torch_thread")
def test_the_rate_of_a_random_model_is_zero_and_progress_is_reported(heldout, requests, tokenizer):
    from oss_finetune.modeling.model import build_embedded_model

    seen = []
    rate = tool_call_rate(
        build_embedded_model(),
        tokenizer,
        heldout,
        max_new_tokens=4,
        batch_size=4,
        on_progress=lambda d, t: seen.append((d, t)),
    )
    assert rate.requests == ROWS and rate.skipped == 0
    assert rate.well_formed == rate.right_and_valid == 0.0
    assert sum(rate.failures.values()) == ROWS
    assert set(rate.per_tool) == {r.tool for r in requests}
    assert set(rate.per_language) == {"English", "French", "Spanish", "German", "Italian"}
    assert seen[0] == (0, ROWS) and seen[-1] == (ROWS, ROWS)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert "tool calls on 6 held-out requests" in rate.summary()
    assert json.dumps(rate.to_dict())
