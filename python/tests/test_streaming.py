"""What a person watches while the model generates: `%oss_finetune chat` shows the tokens as they come in
one output that the Harmony view then takes over, and `%oss_finetune eval` one progress line that its
summary then replaces. Driven through a real IPython InteractiveShell whose display publisher records
what it publishes, as a kernel would send it."""

from html.parser import HTMLParser

import pytest
from IPython.core.displaypub import DisplayPublisher

from oss_finetune.core import schema
from oss_finetune.notebook import display
from oss_finetune.notebook import session as session_module

HARMONY = schema.mime_types()["harmony-tokens"]


class RecordingPublisher(DisplayPublisher):
    """The shell's own publisher, keeping each message: its bundle, its display_id and whether it updates."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.messages: list[dict] = []

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        self.messages.append({"data": data, "display_id": (transient or {}).get("display_id"), "update": update})


@pytest.fixture
def published(shell, monkeypatch):
    recorder = RecordingPublisher(shell=shell)
    monkeypatch.setattr(shell, "display_pub", recorder)
    return recorder.messages


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


class _Tags(HTMLParser):
    def __init__(self, markup: str):
        super().__init__()
        self.tags: list[tuple[str, list[str]]] = []
        self.feed(markup)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, [name for name, _ in attrs]))


def assert_self_contained(data: dict) -> None:
    """text/plain, and HTML of inline-styled elements only: nothing fetched, nothing run."""
    assert data["text/plain"]
    for tag, attributes in _Tags(data["text/html"]).tags:
        assert tag in {"div", "pre", "span", "i", "b"}, tag
        assert set(attributes) <= {"class", "style", "title"}, attributes


# -- the two outputs on their own ------------------------------------------------------------------


def test_a_token_stream_redraws_at_most_every_fifth_of_a_second(shell, published):
    clock = Clock()
    stream = display.TokenStream("chat", lambda ids: " ".join(f"t{i}" for i in ids), clock=clock)
    for step in range(10):  # ten tokens in 90 ms
        stream.add(0, step)
        clock.now += 0.01
    assert len(published) == 1 and not published[0]["update"], "shown at the first token, not redrawn yet"
    clock.now += display.REDRAW_SECONDS
    stream.add(0, 10)
    assert len(published) == 2 and published[1]["update"]
    assert published[1]["display_id"] == published[0]["display_id"] == stream.display_id
    assert published[1]["data"]["text/plain"].endswith("t8 t9 t10")
    assert "11 tokens so far" in published[1]["data"]["text/plain"]
    stream.redraw()
    assert len(published) == 2, "nothing new, nothing redrawn"


def test_token_text_is_escaped_in_the_streams_html(shell, published):
    hostile = {0: '<img src=x onerror="alert(1)">', 1: "<script>alert(2)</script>"}
    stream = display.TokenStream("chat", lambda ids: "".join(hostile[i] for i in ids), ("base", "<b>x</b>"))
    stream.add(0, 0)
    stream.add(1, 1)
    stream.redraw()
    for message in published:
        assert_self_contained(message["data"])
        assert "<img" not in message["data"]["text/html"] and "<b>x</b>" not in message["data"]["text/html"]
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in published[-1]["data"]["text/html"]
    assert '<img src=x onerror="alert(1)">' in published[-1]["data"]["text/plain"]


def test_a_progress_line_says_done_total_elapsed_and_eta_then_its_summary(shell, published):
    clock = Clock()
    line = display.ProgressLine("eval", "prompts", clock=clock)
    line.update(0, 8)
    clock.now += 10
    line.update(2, 8)
    clock.now += 0.05
    line.update(3, 8)  # too soon after the last redraw
    clock.now += 10
    line.update(8, 8)
    line.finish("eval: all done")
    texts = [m["data"]["text/plain"] for m in published]
    assert texts == [
        "eval: 0/8 prompts, elapsed 0:00, ETA ?",
        "eval: 2/8 prompts, elapsed 0:10, ETA 0:30",
        "eval: 8/8 prompts, elapsed 0:20",
        "eval: all done",
    ]
    assert [m["update"] for m in published] == [False, True, True, True]
    assert {m["display_id"] for m in published} == {line.display_id}
    for message in published:
        assert_self_contained(message["data"])


# -- through the magics ----------------------------------------------------------------------------


@pytest.fixture
def every_token(monkeypatch):
    # The tiny model writes its tokens within milliseconds; redraw at each so that the updates show.
    monkeypatch.setattr(display, "REDRAW_SECONDS", 0.0)


@pytest.fixture(scope="module")
def session(tmp_path_factory, one_torch_thread):
    s = session_module.reset_session(
        {"model": {"name_or_path": "embedded:tiny"}, "training": {"output_dir": str(tmp_path_factory.mktemp("runs"))}}
    )
    yield s
    session_module.reset_session()


def stream_of(published, display_id):
    return [m for m in published if m["display_id"] == display_id]


def test_chat_streams_its_tokens_then_the_harmony_view_takes_their_place(shell, session, published, every_token):
    result = shell.run_cell("%oss_finetune chat --effort low --max-new-tokens 8 What is 2 + 2?")
    assert result.success, result.error_in_exec
    said = [m["data"]["text/plain"] for m in published if m["display_id"] is None]
    assert said[0].startswith("loaded embedded:tiny (the tiny GPT-OSS, seeded random weights"), (
        "the automatic load is said in one line"
    )
    [display_id] = {m["display_id"] for m in published if m["display_id"]}
    live = stream_of(published, display_id)
    assert not live[0]["update"] and all(m["update"] for m in live[1:])
    for message in live:
        assert_self_contained(message["data"])
    *streaming, final = live
    assert HARMONY not in streaming[-1]["data"] and HARMONY in final["data"]
    tokens = final["data"][HARMONY]["conversations"][0]["tokens"]
    answer = session.loaded.tokenizer.decode(tokens["ids"][-8:])
    # One redraw per token: the first shows one token, the last all of them.
    assert [m["data"]["text/plain"].split("\n")[0] for m in streaming] == [
        f"chat: generating, {n} token{'' if n == 1 else 's'} so far" for n in range(1, 9)
    ]
    assert streaming[-1]["data"]["text/plain"].split("\n", 1)[1] == answer
    # The reply in words follows the view.
    assert published[-1]["display_id"] is None and published[-1]["data"]["text/plain"] == said[-1]


def test_before_after_streams_both_rows_side_by_side(shell, session, published, every_token):
    assert shell.run_cell("%oss_finetune lora --r 4").success
    published.clear()
    result = shell.run_cell("%oss_finetune chat --before-after --max-new-tokens 5 Bonjour ?")
    assert result.success, result.error_in_exec
    [display_id] = {m["display_id"] for m in published if m["display_id"]}
    *streaming, final = stream_of(published, display_id)
    assert len(streaming) == 10, "two rows of five tokens, one redraw each"
    last = streaming[-1]["data"]
    assert "── base model" in last["text/plain"] and "── with adapter" in last["text/plain"]
    assert "<i>base model</i>" in last["text/html"] and "<i>with adapter</i>" in last["text/html"]
    conversation = final["data"][HARMONY]["conversations"][0]
    assert conversation["tokens"]["label"] == "base model" and conversation["compare"]["label"] == "with adapter"


def test_eval_shows_its_progress_in_place_and_ends_with_a_summary(shell, session, published, every_token):
    result = shell.run_cell("%oss_finetune eval --limit 5 --no-adapter")
    assert result.success, result.error_in_exec
    said = [m["data"]["text/plain"] for m in published if m["display_id"] is None]
    assert said == [
        "eval: 5 held-out questions from embedded:multilingual-heldout, effort medium, base model, 5 at a time"
    ]
    [display_id] = {m["display_id"] for m in published if m["display_id"]}
    lines = [m["data"]["text/plain"] for m in stream_of(published, display_id)]
    assert lines[0] == "eval: 0/5 questions, elapsed 0:00, ETA ?"
    counts = [int(line.split(": ", 1)[1].split("/", 1)[0]) for line in lines[:-1]]
    assert counts == sorted(set(counts)) and counts[-1] == 5
    assert lines[-1].startswith("eval: effort medium: in the requested language ") and "\n" not in lines[-1]
    assert session.evaluations["base model"].requests == 5
