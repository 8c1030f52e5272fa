"""The session's before/after chat: one question, answered by the base model and with the adapter."""

import dataclasses
import json

import pytest
import torch

from oss_finetune.core import schema
from oss_finetune.core.schema import schema_dir
from oss_finetune.notebook.session import Session, SessionError
from oss_finetune.training.runs import RunInfo


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session({"model": {"name_or_path": "embedded:tiny"}})
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
    # Generated text is no training row: the view opens it without the loss mask.
    assert conversation["origin"] == "generation"
    # Both streams start with the same prompt, which says the effort and the reasoning language.
    prompt_text = "".join(conversation["tokens"]["text"])
    assert "Reasoning: high" in prompt_text and "French" in prompt_text
    assert conversation["tokens"]["ids"][:20] == conversation["compare"]["ids"][:20]
    assert both["before"]["token_ids"] and both["after"]["token_ids"]
    # Every message a token points at is described.
    described = {m["index"] for m in conversation["messages"]}
    for stream in (conversation["tokens"], conversation["compare"]):
        assert {m for m in stream["message"] if m >= 0} <= described


def test_before_after_in_one_batch_equals_two_separate_chats(session, decoding_batches):

    session.lora({"r": 4, "alpha": 8})
    # A fresh adapter's B is zero and would answer as the base does; these weights make the two differ.
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, parameter in session.model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    calls = decoding_batches
    streamed: list[tuple[int, int]] = []
    ask = dict(effort="low", language="German", max_new_tokens=10)
    both = session.chat_before_after("Wie viel ist 3 mal 7?", on_token=lambda row, t: streamed.append((row, t)), **ask)
    assert calls == [[False, True]], "both answers come from one batch"
    before = session.chat("Wie viel ist 3 mal 7?", use_adapter=False, **ask)
    after = session.chat("Wie viel ist 3 mal 7?", use_adapter=True, **ask)
    assert both["before"]["token_ids"] == before["token_ids"]
    assert both["after"]["token_ids"] == after["token_ids"]
    assert before["token_ids"] != after["token_ids"], "the adapter changes the answer"
    assert [t for row, t in streamed if row == 0] == before["token_ids"]
    assert [t for row, t in streamed if row == 1] == after["token_ids"]
    conversation = both["payload"]["conversations"][0]
    prompt_length = len(conversation["tokens"]["ids"]) - len(before["token_ids"])
    assert conversation["tokens"]["ids"][prompt_length:] == before["token_ids"]
    assert conversation["compare"]["ids"][prompt_length:] == after["token_ids"]


def test_chat_streams_each_token_it_returns(session):
    streamed: list[int] = []
    reply = session.chat("Hello?", effort="low", max_new_tokens=6, on_token=streamed.append)
    assert streamed == reply["token_ids"] and len(streamed) >= 1
    # A single answer is generated text too: the view opens it with the loss mask off.
    assert reply["payload"]["conversations"][0]["origin"] == "generation"


def test_evaluate_reports_progress_as_questions_finish(session):
    seen = []
    rate = session.evaluate(limit=6, max_new_tokens=6, batch_size=4, on_progress=lambda d, t: seen.append((d, t)))
    assert rate.requests == 6
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert all(t == 6 for _, t in seen)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen}), "counts only increase"
    assert (4, 6) in seen, "the first batch of 4 is reported when it is done"


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
