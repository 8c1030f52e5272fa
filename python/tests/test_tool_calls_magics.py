"""`%oss_finetune eval --tools` and `%oss_finetune chat --tools` in a real IPython shell, on the tiny
random model (fast: the point is the plumbing; test_tool_calling_tutorial.py trains the real one)."""

import pytest

from oss_finetune.notebook import session as session_module
from oss_finetune.notebook import tutorial


@pytest.fixture(autouse=True)
def tiny_session(tmp_path, one_torch_thread):
    return session_module.reset_session(
        {"model": {"name_or_path": "embedded:tiny"}, "training": {"output_dir": str(tmp_path / "runs")}}
    )


def run(shell, capsys, source):
    result = shell.run_cell(source)
    out, err = capsys.readouterr()
    return result, out, err


def test_eval_tools_measures_the_held_out_tool_calls_and_keeps_the_rate(shell, capsys, tiny_session):
    result, out, err = run(shell, capsys, "%oss_finetune eval --tools --limit 3")
    assert result.success, err
    assert "eval --tools: 3 held-out requests from embedded:tool-calls-heldout, base model" in out
    assert "eval --tools: tool calls on 3 held-out requests: well-formed 0%" in out
    rate = tiny_session.evaluations["tool calls, base model"]
    assert rate.requests == 3 and rate.right_and_valid == 0.0
    # The tutorial's summary words a tool-call rate as such.
    assert "tool calls, base model: right tool with valid arguments 0% of 3 held-out requests" in tutorial.summary(
        tiny_session
    )


def test_eval_tools_names_a_bad_limit_and_a_source_without_calls(shell, capsys, tmp_path):
    result, _, err = run(shell, capsys, "%oss_finetune eval --tools --limit many")
    assert not result.success and "--limit 'many' is not a whole number" in err
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}\n')
    result, out, err = run(shell, capsys, f"%oss_finetune eval --tools {plain}")
    assert result.success, err
    assert "tool calls on 0 held-out requests" in out and "1 row without a tool call left out" in out


def test_chat_tools_offers_the_data_sets_tools(shell, capsys, tiny_session):
    result, _, err = run(shell, capsys, "%oss_finetune chat --tools --max-new-tokens 2 Convert 12 km to miles.")
    assert not result.success
    assert "chat --tools: the data set has no tools" in err

    tiny_session.set_config({"data": {"source": "embedded:tool-calls", "limit": 3}})
    tools = tiny_session.data_tools()
    assert [t["function"]["name"] for t in tools] == ["calculate", "convert_units", "get_capital"]
    result, _, err = run(shell, capsys, "%oss_finetune chat --tools --max-new-tokens 2 Convert 12 km to miles.")
    assert result.success, err
    reply = tiny_session.chat("How many miles is 12 km?", tools=tools, max_new_tokens=2)
    text = "".join(reply["payload"]["conversations"][0]["tokens"]["text"])
    assert "Calls to these tools must go to the commentary channel" in text
    assert "type convert_units = (_: {" in text
    assert reply["payload"]["conversations"][0]["title"].endswith("3 tools)")


def test_the_loss_policies_view_shows_one_row_under_each_mask(tiny_session):
    tiny_session.set_config({"data": {"source": "embedded:tool-calls", "limit": 2}})
    payload = tutorial.loss_masks(tiny_session, 1)
    masks = [c["loss_mask"] for c in payload["conversations"]]
    assert masks == ["assistant", "calls_and_final", "final"]
    trained = [sum(c["tokens"]["trained"]) for c in payload["conversations"]]
    assert trained[0] > trained[1] > trained[2] > 0
    with pytest.raises(ValueError, match="row 5 does not exist"):
        tutorial.loss_masks(tiny_session, 5)
