"""The magics and the comm in a real ipykernel, driven over ZeroMQ by jupyter_client.

One kernel serves the whole module (starting one and building the model take seconds); the tests
run in file order and build on each other, like the cells of a notebook: load -> data -> lora ->
train -> save, then the comm, then an interrupt in the middle of training.
"""

from __future__ import annotations

import json
import queue
import sys
import time
import uuid
from pathlib import Path

import pytest

from oss_finetune.core import schema
from oss_finetune.notebook import comm as comm_module
from oss_finetune.notebook import session as session_module

jupyter_client = pytest.importorskip("jupyter_client")
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

TRAINING_MIME = schema.mime_types()["training-run"]
HARMONY_MIME = schema.mime_types()["harmony-tokens"]
DATASET_MIME = schema.mime_types()["dataset-summary"]
# Tiny settings: the point is the plumbing, not the loss.
TINY_TRAINING = "--gradient-accumulation-steps 2 --warmup-steps 0 --no-gradient-checkpointing"


class Kernel:
    """A started kernel with helpers that wait for a request's reply and its IOPub idle."""

    def __init__(self, workdir: Path):
        specs = workdir / "kernels"
        (specs / "oss-finetune-test").mkdir(parents=True)
        # A kernelspec made on the fly, so the kernel runs on this interpreter and its packages.
        (specs / "oss-finetune-test" / "kernel.json").write_text(
            json.dumps(
                {
                    "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "oss-finetune tests",
                    "language": "python",
                }
            )
        )
        self.cwd = workdir / "notebook"
        self.cwd.mkdir()
        self.manager = KernelManager(
            kernel_name="oss-finetune-test", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(specs)])
        )
        self.manager.start_kernel(cwd=str(self.cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)
        self.stray: list[dict] = []  # IOPub messages read while waiting for something else

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def iopub(self, timeout: float) -> dict:
        if self.stray:
            return self.stray.pop(0)
        return self.client.get_iopub_msg(timeout=timeout)

    def execute(self, code: str, timeout: float = 180, on_message=None) -> tuple[dict, list[dict]]:
        """Run a cell; returns its execute_reply content and every IOPub message of it, in order."""
        msg_id = self.client.execute(code, store_history=False)
        messages: list[dict] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no idle within {timeout}s for {code!r}")
            msg = self.iopub(left)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            messages.append(msg)
            if on_message is not None:
                on_message(msg)
        reply = self.client.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = self.client.get_shell_msg(timeout=30)
        return reply["content"], messages


def text_of(messages: list[dict]) -> str:
    """What the person sees: streams, errors and the text/plain of rich outputs."""
    parts = []
    for msg in messages:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            parts.append(content["text"])
        elif msg["msg_type"] in ("display_data", "update_display_data", "execute_result"):
            parts.append(content["data"].get("text/plain", "") + "\n")
        elif msg["msg_type"] == "error":
            parts.append("\n".join(content["traceback"]) + "\n")
    return "".join(parts)


def ok(reply: dict, messages: list[dict]) -> None:
    assert reply["status"] == "ok", text_of(messages)


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    k = Kernel(tmp_path_factory.mktemp("kernel"))
    try:
        reply, messages = k.execute("%load_ext oss_finetune")
        ok(reply, messages)
        yield k
    finally:
        k.close()


# -- the magics in order, on the embedded default ----------------------------------------------


def test_load_reports_the_model_device_and_dtype(kernel):
    reply, messages = kernel.execute("%oss_finetune load embedded:tiny")
    ok(reply, messages)
    assert "loaded embedded:tiny: GptOssForCausalLM" in text_of(messages)
    assert "vocab 201,088" in text_of(messages)
    # The first cell to import transformers in a kernel without ipywidgets used to get tqdm's red warning.
    stderr = [m["content"]["text"] for m in messages if m["msg_type"] == "stream" and m["content"]["name"] == "stderr"]
    assert not any("IProgress" in text for text in stderr), stderr


def test_data_shows_the_summary_as_a_rich_output(kernel):
    # The embedded default data set, cut to a few rows so that CPU steps stay short.
    reply, messages = kernel.execute("%oss_finetune data embedded:multilingual --limit 6 --max-seq-length 256")
    ok(reply, messages)
    [shown] = [m for m in messages if m["msg_type"] == "display_data"]
    summary = shown["content"]["data"][DATASET_MIME]
    schema.validate("dataset-summary", summary)
    assert summary["rows"] == 6 and summary["source"] == "embedded:multilingual"
    assert len(summary["languages"]) >= 3
    assert "text/html" in shown["content"]["data"]


def test_show_gives_the_harmony_tokens_with_the_loss_mask(kernel):
    reply, messages = kernel.execute("%oss_finetune show 0 2")
    ok(reply, messages)
    [shown] = [m for m in messages if m["msg_type"] == "display_data"]
    payload = shown["content"]["data"][HARMONY_MIME]
    schema.validate("harmony-tokens", payload)
    assert len(payload["conversations"]) == 2
    tokens = payload["conversations"][0]["tokens"]
    assert 0 < sum(tokens["trained"]) < len(tokens["ids"])
    # Only the assistant's tokens are trained under the default loss mask.
    assert {r for r, t in zip(tokens["role"], tokens["trained"]) if t} == {"assistant"}


def test_lora_puts_an_adapter_on(kernel):
    reply, messages = kernel.execute("%oss_finetune lora --r 4 --alpha 8")
    ok(reply, messages)
    assert "LoRA: " in text_of(messages) and "trainable parameters" in text_of(messages)


def test_train_updates_one_live_output_in_place(kernel):
    reply, messages = kernel.execute(f"%oss_finetune train --max-steps 3 --save-steps 2 {TINY_TRAINING}")
    ok(reply, messages)
    shown = [m for m in messages if m["msg_type"] == "display_data" and TRAINING_MIME in m["content"]["data"]]
    updates = [m for m in messages if m["msg_type"] == "update_display_data"]
    assert len(shown) == 1, "one output per run"
    display_id = shown[0]["content"]["transient"]["display_id"]
    assert updates and all(m["content"]["transient"]["display_id"] == display_id for m in updates)
    payloads = [shown[0]["content"]["data"][TRAINING_MIME]] + [m["content"]["data"][TRAINING_MIME] for m in updates]
    for payload in payloads:
        schema.validate("training-run", payload)
    steps = [p["step"] for p in payloads]
    assert steps == sorted(steps) and {1, 2, 3} <= set(steps)
    assert [len(p["metrics"]) for p in payloads if p["status"] == "running"][-1] >= 2
    final = payloads[-1]
    assert final["status"] == "completed" and final["step"] == 3
    assert final["checkpoint"].endswith("step-3")
    assert all("text/html" in m["content"]["data"] and "text/plain" in m["content"]["data"] for m in updates)
    assert "completed 3 steps" in text_of(messages)
    run_dir = Path(final["run_dir"])
    if not run_dir.is_absolute():
        run_dir = kernel.cwd / run_dir
    assert (run_dir / "config.json").is_file() and (run_dir / "state.json").is_file()
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3


def test_compare_scores_every_token_before_and_after_the_adapter(kernel):
    reply, messages = kernel.execute("%oss_finetune compare 1")
    ok(reply, messages)
    [shown] = [m for m in messages if m["msg_type"] == "display_data"]
    conversation = shown["content"]["data"][HARMONY_MIME]["conversations"][0]
    before, after = conversation["tokens"], conversation["compare"]
    assert before["label"] == "base model" and after["label"] == "with adapter"
    assert before["ids"] == after["ids"] and len(before["logprob"]) == len(before["ids"])
    assert before["logprob"][0] is None and all(v is not None for v in before["logprob"][1:])
    assert before["logprob"] != after["logprob"], "three steps of training changed the adapter's scores"


def test_chat_answers_with_effort_and_language(kernel):
    reply, messages = kernel.execute("%oss_finetune chat --effort low --language French --max-new-tokens 6 Bonjour ?")
    ok(reply, messages)
    # The answer streams into one output, which the Harmony view then replaces (same display_id).
    outputs = [m for m in messages if m["msg_type"] in ("display_data", "update_display_data")]
    [shown] = [m for m in outputs if HARMONY_MIME in m["content"]["data"]]
    stream_id = shown["content"]["transient"]["display_id"]
    same = [m["msg_type"] for m in outputs if m["content"].get("transient", {}).get("display_id") == stream_id]
    assert same[0] == "display_data" and same[-1] == shown["msg_type"] == "update_display_data"
    tokens = shown["content"]["data"][HARMONY_MIME]["conversations"][0]["tokens"]
    text = "".join(tokens["text"])
    assert "Reasoning: low" in text and "reasoning language: French" in text
    assert text.count("<|start|>assistant") == 1


def test_save_writes_a_peft_adapter_in_the_run_folder(kernel):
    reply, messages = kernel.execute("%oss_finetune save")
    ok(reply, messages)
    said = text_of(messages)
    assert said.startswith("adapter saved to ")
    path = Path(said.split("adapter saved to ", 1)[1].split(" (PEFT", 1)[0])
    path = path if path.is_absolute() else kernel.cwd / path
    assert json.loads((path / "adapter_config.json").read_text())["r"] == 4
    assert (path / "adapter_model.safetensors").is_file()
    reply, messages = kernel.execute("%oss_finetune status")
    assert f"adapter {path.relative_to(kernel.cwd)}" in text_of(messages) or f"adapter {path}" in text_of(messages)


def test_a_mistake_is_one_line_and_the_kernel_carries_on(kernel):
    reply, messages = kernel.execute("%oss_finetune lora --r 0")
    assert reply["status"] == "error" and reply["ename"] == "UsageError"
    # IPython writes a UsageError as one line on stderr, with no traceback.
    assert text_of(messages) == "UsageError: lora.r: must be >= 1 — use an integer from 1 to 1024, e.g. --r 8\n"
    reply, messages = kernel.execute("%oss_finetune lora --r 0 --verbose")
    assert reply["status"] == "error" and len(reply["traceback"]) > 1
    reply, messages = kernel.execute("print(6 * 7)")
    assert text_of(messages) == "42\n"


# -- the comm ------------------------------------------------------------------------------------


class CommClient:
    """The widget's side of the oss_finetune comm, over the real wire protocol."""

    def __init__(self, kernel: Kernel):
        self.kernel = kernel
        self.comm_id = uuid.uuid4().hex
        self.events: list[dict] = []
        msg = kernel.client.session.msg(
            "comm_open", {"comm_id": self.comm_id, "target_name": comm_module.TARGET, "data": {}}
        )
        kernel.client.shell_channel.send(msg)

    def send_raw(self, data) -> None:
        msg = self.kernel.client.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        self.kernel.client.shell_channel.send(msg)

    def next_message(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no comm message from the kernel")
            try:
                msg = self.kernel.client.get_iopub_msg(timeout=left)
            except queue.Empty:
                continue
            if msg["msg_type"] == "comm_msg" and msg["content"]["comm_id"] == self.comm_id:
                data = msg["content"]["data"]
                schema.validate("comm-message", data)  # the kernel's side of the contract, too
                return data

    def request(self, data, timeout: float = 60) -> dict:
        self.send_raw(data)
        expected = data.get("request_id") if isinstance(data, dict) else None
        while True:
            message = self.next_message(timeout)
            if message["op"] == "training_update":
                self.events.append(message)
                continue
            if expected is None or message["request_id"] in (expected, "unknown"):
                return message


@pytest.fixture(scope="module")
def widget(kernel):
    return CommClient(kernel)


def test_comm_get_config_returns_the_full_config_with_defaults(widget):
    reply = widget.request({"op": "get_config", "request_id": "a1"})
    assert reply["ok"] is True and reply["op"] == "get_config" and reply["request_id"] == "a1"
    config = reply["result"]["config"]
    assert config["lora"]["r"] == 4  # what the magics set earlier in this kernel
    assert config["training"]["learning_rate"] == 0.0002
    assert reply["result"]["defaults"]["lora"]["r"] == 8


def test_comm_set_config_validates(widget, kernel):
    reply = widget.request({"op": "set_config", "request_id": "a2", "config": {"lora": {"r": 0}}})
    assert reply == {
        "op": "set_config",
        "request_id": "a2",
        "ok": False,
        "error": {"path": "config.lora.r", "message": "must be >= 1"},
    }
    reply = widget.request({"op": "set_config", "request_id": "a3", "config": {"training": {"max_steps": 7}}})
    assert reply["ok"] and reply["result"]["config"]["training"]["max_steps"] == 7
    # The magics see what the widget set: one session behind both.
    _, messages = kernel.execute("%oss_finetune train --show")
    assert "* max_steps" in text_of(messages) and "7" in text_of(messages)


@pytest.mark.parametrize(
    "bad,path",
    [
        ({}, "op"),
        ({"op": "get_config"}, "request_id"),
        ({"op": "drop_tables", "request_id": "b1"}, "op"),
        ({"op": "get_config", "request_id": 5}, "request_id"),
        ({"op": "read_metrics", "request_id": "b2"}, "run_id"),
        ({"op": "read_metrics", "request_id": "b3", "run_id": "../../etc"}, "run_id"),
        ({"op": "read_metrics", "request_id": "b4", "run_id": "no-such-run"}, "run_id"),
        ({"op": "set_config", "request_id": "b5", "config": {"lora": {"rank": 8}}}, "config.lora.rank"),
        ({"op": "training_update", "request_id": "b6"}, "op"),
        ({"op": "get_config", "request_id": "b7", "exec": "import os"}, "exec"),
    ],
)
def test_a_bad_comm_message_gets_an_error_reply_and_the_kernel_answers_after(widget, kernel, bad, path):
    reply = widget.request(bad)
    assert reply["ok"] is False and reply["error"]["path"] == path, reply
    assert reply["error"]["message"]
    assert widget.request({"op": "get_config", "request_id": "after"})["ok"] is True


def test_a_non_object_comm_message_is_answered_too(widget, kernel):
    # The wire allows any JSON as data; a list or a number must not reach the handlers.
    for data in (["get_config"], 42, "get_config", None):
        widget.send_raw(data)
        reply = widget.next_message()
        assert reply["ok"] is False and reply["op"] == "error"
    reply, messages = kernel.execute("print('alive')")
    assert text_of(messages) == "alive\n"


def test_comm_lists_runs_and_reads_a_runs_metrics(widget):
    reply = widget.request({"op": "list_runs", "request_id": "c1"})
    assert reply["ok"]
    [run] = reply["result"]["runs"]
    assert run["status"] == "completed" and run["step"] == 3 and run["max_steps"] == 3
    assert run["adapter"] is not None
    reply = widget.request({"op": "read_metrics", "request_id": "c2", "run_id": run["run_id"]})
    assert [m["step"] for m in reply["result"]["metrics"]] == [1, 2, 3]
    reply = widget.request({"op": "read_metrics", "request_id": "c3", "run_id": run["run_id"], "since_step": 2})
    assert [m["step"] for m in reply["result"]["metrics"]] == [3]


def test_comm_starts_training_in_the_background_and_stops_it(widget, kernel):
    reply = widget.request(
        {"op": "start_training", "request_id": "t1", "config": {"training": {"max_steps": 400, "save_steps": 1000}}}
    )
    assert reply == {"op": "start_training", "request_id": "t1", "ok": True, "result": {"started": True}}
    # The kernel is free while the run trains: it answers the shell and the comm.
    deadline = time.monotonic() + 120
    while not any(e.get("payload", {}).get("step", 0) >= 1 for e in widget.events):
        widget.events.append(widget.next_message(max(1, deadline - time.monotonic())))
    reply, messages = kernel.execute("print('free')")
    assert text_of(messages) == "free\n"
    runs = widget.request({"op": "list_runs", "request_id": "t2"})["result"]["runs"]
    assert runs[-1]["status"] in ("running", "stopping")
    stop = widget.request({"op": "stop", "request_id": "t3"})
    assert stop["ok"] and stop["result"]["run_id"] == runs[-1]["run_id"]
    while not any(e.get("payload", {}).get("status") == "stopped" for e in widget.events):
        widget.events.append(widget.next_message(120))
    events = [e for e in widget.events if e["op"] == "training_update"]
    assert all(e["request_id"] == "t1" and e["ok"] for e in events)
    final = events[-1]["payload"]
    assert final["status"] == "stopped" and final["checkpoint"] and final["step"] < 400


def test_an_open_comm_follows_a_run_that_a_magic_started(kernel):
    # A panel that opened its comm (or opened it again after losing it) sees every run of the kernel live.
    follower = CommClient(kernel)
    assert follower.request({"op": "get_config", "request_id": "f1"})["ok"]
    reply, messages = kernel.execute("%oss_finetune train --max-steps 2 --save-steps 100")
    ok(reply, messages)
    events = [
        m["content"]["data"]
        for m in messages
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == follower.comm_id
    ]
    for event in events:
        schema.validate("comm-message", event)
    assert events and all(e["op"] == "training_update" and e["ok"] for e in events)
    final = events[-1]["payload"]
    assert final["status"] == "completed" and final["step"] == 2
    assert {e["request_id"] for e in events} == {f"run:{final['run_id']}"}
    assert [e["payload"]["step"] for e in events if e["payload"]["status"] == "running"][-1] == 2


# -- interrupting a run in a cell ----------------------------------------------------------------


def test_interrupt_during_train_stops_the_run_with_a_checkpoint(kernel):
    seen_step = []

    def interrupt_after_first_step(msg):
        data = msg["content"].get("data", {})
        payload = data.get(TRAINING_MIME)
        if payload and payload["step"] >= 1 and not seen_step:
            seen_step.append(payload["step"])
            kernel.manager.interrupt_kernel()

    reply, messages = kernel.execute(
        f"%oss_finetune train --max-steps 500 --save-steps 1000 {TINY_TRAINING}", on_message=interrupt_after_first_step
    )
    assert seen_step, text_of(messages)
    payloads = [
        m["content"]["data"][TRAINING_MIME]
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data") and TRAINING_MIME in m["content"]["data"]
    ]
    final = payloads[-1]
    assert final["status"] == "stopped", text_of(messages)
    assert 1 <= final["step"] < 500
    assert "interrupted" in final["message"]
    checkpoint = Path(final["checkpoint"])
    checkpoint = checkpoint if checkpoint.is_absolute() else kernel.cwd / checkpoint
    assert checkpoint.name == f"step-{final['step']}"
    assert (checkpoint / "adapter_model.safetensors").is_file() and (checkpoint / "trainer_state.json").is_file()

    reply, messages = kernel.execute("%oss_finetune status")
    ok(reply, messages)
    said = text_of(messages)
    assert f"{final['run_id']}: stopped at step {final['step']}/500" in said
    assert f"checkpoint {final['checkpoint']}" in said
    # The kernel is still the same one, with its model.
    reply, messages = kernel.execute(
        "from oss_finetune.notebook.session import get_session; print(get_session().loaded is not None)"
    )
    assert text_of(messages) == "True\n"


def test_train_resumes_the_interrupted_run_from_its_checkpoint(kernel):
    _, messages = kernel.execute(
        "from oss_finetune.notebook.session import get_session; "
        "r = get_session().list_runs()[-1]; print(r.run_id, r.step)"
    )
    run_id, step = text_of(messages).split()
    reply, messages = kernel.execute(f"%oss_finetune train --resume latest --max-steps {int(step) + 1} {TINY_TRAINING}")
    ok(reply, messages)
    payloads = [
        m["content"]["data"][TRAINING_MIME]
        for m in messages
        if m["msg_type"] in ("display_data", "update_display_data") and TRAINING_MIME in m["content"]["data"]
    ]
    assert {p["run_id"] for p in payloads} == {run_id}, "the resumed run keeps its id and folder"
    assert payloads[-1]["status"] == "completed" and payloads[-1]["step"] == int(step) + 1


def test_save_merged_writes_full_weights(kernel):
    reply, messages = kernel.execute("%oss_finetune save --merged")
    ok(reply, messages)
    said = text_of(messages)  # transformers' progress bar may come first, on stderr
    assert "merged weights saved to " in said
    path = Path(said.split("merged weights saved to ", 1)[1].split(" (adapter", 1)[0])
    path = path if path.is_absolute() else kernel.cwd / path
    assert json.loads((path / "config.json").read_text())["model_type"] == "gpt_oss"
    assert list(path.glob("*.safetensors"))
    # The merged model is loadable by the same magic, as a local folder.
    reply, messages = kernel.execute(f"%oss_finetune load {path} --dtype float32")
    ok(reply, messages)
    assert "GptOssForCausalLM" in text_of(messages) and "merged" in text_of(messages)


def test_after_a_kernel_restart_status_still_lists_every_run(kernel):
    _, messages = kernel.execute(
        "from oss_finetune.notebook.session import get_session; "
        "print(*(f'{r.run_id}={r.status}' for r in get_session().list_runs()))"
    )
    before = dict(item.split("=") for item in text_of(messages).split())
    kernel.manager.restart_kernel(now=True)
    kernel.client.wait_for_ready(timeout=120)
    kernel.stray.clear()
    reply, messages = kernel.execute("%load_ext oss_finetune\n%oss_finetune status")
    ok(reply, messages)
    said = text_of(messages)
    assert "model: not loaded" in said and f"runs in runs: {len(before)}" in said
    for run_id, status in before.items():
        assert f"{run_id}: {status} at step" in said
    assert sorted(before.values()) == ["completed", "completed", "completed", "stopped"]
    # The last run's final state is shown again, as a rich output.
    assert any(TRAINING_MIME in m["content"].get("data", {}) for m in messages)


# -- the protocol without a kernel ---------------------------------------------------------------


def test_handle_never_raises_on_junk(tmp_path):
    session = session_module.Session({"training": {"output_dir": str(tmp_path)}})
    for junk in (None, 1, "x", [], {"op": None}, {"op": "stop", "request_id": "x" * 500}, {"op": "set_config"}):
        reply = comm_module.handle(junk, session)
        assert reply["ok"] is False
        schema.validate("comm-message", reply)
    assert comm_module.handle({"op": "stop", "request_id": "s"}, session) == {
        "op": "stop",
        "request_id": "s",
        "ok": True,
        "result": {"run_id": None},
    }


def test_a_channel_follows_other_runs_not_its_own_and_stops_when_closed():
    class Comm:
        def __init__(self):
            self.sent = []

        def send(self, message):
            self.sent.append(message)

    comm = Comm()
    channel = comm_module.Channel(comm)
    try:
        channel.own_runs.add("mine")
        session_module._tell_watchers({"run_id": "mine", "status": "running", "step": 1})
        session_module._tell_watchers({"run_id": "theirs", "status": "running", "step": 1})
        assert [(m["request_id"], m["payload"]["run_id"]) for m in comm.sent] == [("run:theirs", "theirs")]
        channel.on_close()
        session_module._tell_watchers({"run_id": "theirs", "status": "running", "step": 2})
        assert len(comm.sent) == 1
    finally:
        channel.unwatch()
