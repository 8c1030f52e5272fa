"""Rich outputs degrade gracefully: each bundle holds the payload, text/plain and safe HTML."""

import json
from pathlib import Path

import pytest

from oss_finetune.core import schema
from oss_finetune.notebook import display

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "contract" / "fixtures"


def fixture(name, file):
    return json.loads((FIXTURES / name / "valid" / file).read_text(encoding="utf-8"))


def hostile_harmony():
    texts = ['<img src=x onerror="alert(1)">', "<script>alert(2)</script>", "&amp;", "\n"]
    n = len(texts)
    return {
        "version": 1,
        "conversations": [
            {
                "messages": [{"index": 0, "role": "assistant", "channel": "final"}],
                "tokens": {
                    "ids": list(range(n)),
                    "text": texts,
                    "message": [0] * n,
                    "role": ["assistant"] * n,
                    "channel": ["final"] * n,
                    "part": ["content"] * n,
                    "trained": [True] * n,
                },
            }
        ],
    }


@pytest.mark.parametrize(
    "name,file",
    [
        ("harmony-tokens", "one-conversation.json"),
        ("training-run", "running.json"),
        ("dataset-summary", "multilingual.json"),
    ],
)
def test_every_bundle_has_payload_text_and_html(name, file):
    payload = fixture(name, file)
    data = display.bundle(name, payload)
    assert data[schema.mime_types()[name]] is payload
    assert data["text/plain"].strip()
    assert data["text/html"].startswith("<div")
    assert "<script" not in data["text/html"]


def test_token_text_is_escaped_in_the_html_fallback():
    data = display.bundle("harmony-tokens", hostile_harmony())
    page = data["text/html"]
    assert "<img" not in page and "<script>" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page
    assert "&amp;amp;" in page  # the entity shows as the five characters the model produced
    assert "⏎" in page


def test_html_fallback_stops_at_the_token_limit_and_says_so(monkeypatch):
    monkeypatch.setattr(display, "HTML_TOKEN_LIMIT", 2)
    page = display.bundle("harmony-tokens", hostile_harmony())["text/html"]
    assert "… 2 more tokens" in page
    assert "&amp;amp;" not in page  # the third token is past the limit


def test_harmony_text_counts_trained_tokens():
    text = display.harmony_text(fixture("harmony-tokens", "one-conversation.json"))
    assert "12 tokens, 5 trained (loss mask: assistant)" in text
    assert "<|start|>user<|message|>Hello<|end|>" in text


def test_harmony_text_of_a_generation_says_nothing_of_a_loss_mask():
    """A chat's answer trains nothing, so its plain-text heading gives the tokens only (the view, too,
    opens with the loss mask off for it)."""
    payload = fixture("harmony-tokens", "one-conversation.json")
    payload["conversations"][0]["origin"] = "generation"
    heading = display.harmony_text(payload).splitlines()[0]
    assert heading.endswith(": 12 tokens") and "trained" not in heading and "loss mask" not in heading


def test_training_text_shows_progress_eta_and_last_metrics():
    text = display.training_text(fixture("training-run", "running.json"))
    assert "[running]" in text and "step 2/60" in text
    assert "ETA 2:00" in text
    assert "loss 1.55" in text and "2,500 tokens/s" in text


def test_training_html_draws_the_loss_curve():
    page = display.training_html(fixture("training-run", "running.json"))
    assert "<polyline" in page and 'aria-label="loss curve"' in page


def test_dataset_text_reports_what_happened_to_long_rows():
    text = display.dataset_text(fixture("dataset-summary", "multilingual.json"))
    assert "998 rows" in text
    assert "1 row over max_seq_length 2048 (dropped)" in text
    assert "1 bad row skipped, first: row 17" in text
    assert "420,000 trained (66%, loss mask assistant)" in text


def test_an_invalid_payload_is_refused_with_its_path():
    payload = fixture("training-run", "running.json")
    payload["status"] = "paused"
    with pytest.raises(schema.SchemaError, match="^status: must be one of"):
        display.bundle("training-run", payload)


def test_live_output_displays_once_then_updates_in_place(monkeypatch):
    import IPython.display as ipd

    calls = []
    monkeypatch.setattr(ipd, "display", lambda data, raw, display_id: calls.append(("display", display_id)))
    monkeypatch.setattr(ipd, "update_display", lambda data, raw, display_id: calls.append(("update", display_id)))
    live = display.LiveOutput("training-run")
    payload = fixture("training-run", "running.json")
    live.update(payload)
    live.update(payload)
    assert calls == [("display", live.display_id), ("update", live.display_id)]
