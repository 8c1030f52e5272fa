"""The session's before/after chat: one question, answered by the base model and with the adapter."""

import dataclasses
import json

import pytest

from oss_finetune.core import schema
from oss_finetune.core.schema import schema_dir
from oss_finetune.notebook.session import Session, SessionError
from oss_finetune.training.runs import RunInfo


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session()
    s.set_config({"training": {"output_dir": str(tmp_path_factory.mktemp("runs"))}})
    s.load({})
    return s


def test_before_after_needs_an_adapter(session):
    with pytest.raises(SessionError, match="no adapter"):
        session.chat_before_after("What is 2 + 2?", effort="low", language="French", max_new_tokens=4)


def test_before_after_puts_both_answers_side_by_side(session):
    session.lora({"r": 4, "alpha": 8})
    both = session.chat_before_after("What is 2 + 2?", effort="high", language="French", max_new_tokens=6)
    payload = schema.validate("harmony-tokens", both["payload"])
    conversation = payload["conversations"][0]
    assert conversation["tokens"]["label"] == "base model"
    assert conversation["compare"]["label"] == "with adapter"
    # Both streams start with the same prompt, which says the effort and the reasoning language.
    prompt_text = "".join(conversation["tokens"]["text"])
    assert "Reasoning: high" in prompt_text and "French" in prompt_text
    assert conversation["tokens"]["ids"][:20] == conversation["compare"]["ids"][:20]
    assert both["before"]["token_ids"] and both["after"]["token_ids"]
    # Every message a token points at is described.
    described = {m["index"] for m in conversation["messages"]}
    for stream in (conversation["tokens"], conversation["compare"]):
        assert {m for m in stream["message"] if m >= 0} <= described


def test_evaluate_measures_held_out_questions_and_keeps_the_result(session):
    rate = session.evaluate(limit=5, max_new_tokens=8, use_adapter=False)
    assert rate.requests == 5
    assert 0.0 <= rate.in_language <= 1.0 and 0.0 <= rate.well_formed <= 1.0
    # An untrained tiny model does not write complete Harmony in 8 tokens.
    assert rate.well_formed == 0.0
    assert session.evaluations["base model"] is rate


def test_a_run_description_has_the_fields_the_comm_schema_gives_it():
    # list_runs' RunInfo is built in Python and read by the panel as comm-operations' RunInfo.
    operations = json.loads((schema_dir() / "comm-operations.schema.json").read_text(encoding="utf-8"))
    assert [f.name for f in dataclasses.fields(RunInfo)] == list(operations["$defs"]["RunInfo"]["properties"])
