"""The comm's ``export`` (the side panel's Export button) against a real Session on embedded:tiny: the reply
names the folder at once, the steps and the result come as export_update events, the files are on disk and
checked, and what cannot be exported is refused naming the field and the fix."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from oss_finetune.core import schema
from oss_finetune.modeling import export as ex
from oss_finetune.notebook import comm
from oss_finetune.notebook import session as session_module


class Events:
    """What the kernel sends on the comm, from any thread, and a wait for the end of one export."""

    def __init__(self):
        self.sent: list[dict] = []
        self.ended = threading.Event()

    def send(self, message: dict) -> None:
        schema.validate("comm-message", message)
        self.sent.append(message)
        if message["op"] == "export_update" and (not message["ok"] or message["payload"]["stage"] == "done"):
            self.ended.set()

    def of(self, request_id: str) -> list[dict]:
        return [m for m in self.sent if m["request_id"] == request_id]


@pytest.fixture(scope="module")
def session(one_torch_thread, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    session = session_module.Session(
        {"model": {"name_or_path": "embedded:tiny", "dtype": "float32"}, "training": {"output_dir": str(runs)}}
    )
    session.lora()
    return session


def export(session, request: dict) -> tuple[dict, Events]:
    events = Events()
    reply = comm.handle({"op": "export", **request}, session, events.send)
    schema.validate("comm-message", reply)
    if reply["ok"]:
        assert events.ended.wait(300), events.sent
        assert session.wait_export(30)
    return reply, events


@pytest.mark.parametrize("fmt", ["peft", "merged"])
def test_export_writes_checks_and_reports_each_step_then_the_result(session, tmp_path, fmt):
    folder = tmp_path / fmt
    reply, events = export(session, {"request_id": f"x-{fmt}", "format": fmt, "folder": str(folder)})
    assert reply == {
        "op": "export",
        "request_id": f"x-{fmt}",
        "ok": True,
        "result": {"started": True, "folder": str(folder)},
    }
    steps = [m["payload"] for m in events.of(f"x-{fmt}")]
    assert all(m["op"] == "export_update" and m["ok"] for m in events.sent)
    assert [s["stage"] for s in steps] == ["writing", "checking", "done"]
    assert steps[0]["message"] == f"writing {fmt} to {folder}"
    consumer = "peft" if fmt == "peft" else "transformers"
    assert f"reading it back with {consumer} and comparing 3 probes with the live model" in steps[1]["message"]
    done = steps[-1]
    assert done["folder"] == str(folder) and done["format"] == fmt and done["logits_compared"] is True
    assert done["verification"].startswith(f"verified with {consumer}: 36 greedy tokens of 3 probes equal")
    assert done["message"] == f"{fmt}: wrote {folder} ({done['size']}, {done['seconds']:.1f} s); {done['verification']}"
    on_disk = sum(f.stat().st_size for f in folder.iterdir())
    # export.json gains the check's findings after the size is taken.
    assert 0 < done["bytes"] <= on_disk
    assert json.loads((folder / ex.MANIFEST).read_text())["verified"]["greedy_tokens_equal"] == 36
    if fmt == "peft":
        assert done["serve"] == (
            f"PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('embedded:tiny'), '{folder}')"
        )
        assert (folder / "adapter_model.safetensors").is_file()
    else:
        assert done["serve"] == f"vllm serve {folder}"
        assert (folder / "model.safetensors").is_file()
    assert session.saved[fmt] == str(folder)
    assert not session.is_exporting()


def test_the_default_folder_is_the_formats_name_in_the_output_folder_as_the_magic_has_it(session):
    reply, events = export(session, {"request_id": "d1", "format": "peft"})
    folder = session.output_dir().absolute() / "peft"
    assert reply["result"]["folder"] == str(folder)
    assert events.of("d1")[-1]["payload"]["folder"] == str(folder)
    assert (folder / "adapter_config.json").is_file()


def test_the_kernel_keeps_answering_while_it_exports_and_refuses_what_would_touch_the_model(
    session, tmp_path, monkeypatch
):
    # The check waits for the test's word, so the export is surely still running meanwhile.
    go_on = threading.Event()
    check = ex.verify_export
    monkeypatch.setattr(ex, "verify_export", lambda *a, **k: go_on.wait(60) and check(*a, **k))
    events = Events()
    reply = comm.handle(
        {"op": "export", "request_id": "b1", "format": "peft", "folder": str(tmp_path / "a")}, session, events.send
    )
    try:
        assert reply["ok"] and session.is_exporting()
        assert comm.handle({"op": "get_config", "request_id": "b2"}, session)["ok"]
        again = comm.handle({"op": "export", "request_id": "b3", "format": "merged"}, session, events.send)
        assert again["ok"] is False
        assert again["error"]["message"].startswith(
            f"cannot save while the peft export to {tmp_path / 'a'} is being written and checked"
        )
        with pytest.raises(session_module.SessionError, match="cannot use the model while the peft export"):
            session.chat("hello", max_new_tokens=1)
        # Reading the data and its token view needs only the tokenizer, so they go on.
        session.prepared = None
        assert session.show([0])["conversations"][0]["title"].startswith("row 0")
    finally:
        go_on.set()
        assert events.ended.wait(300)
        session.wait_export(300)
    # The refused export sent nothing beyond its reply.
    assert events.of("b1")[-1]["payload"]["stage"] == "done" and events.of("b3") == []
    assert session.chat("hello", max_new_tokens=1)["payload"]


def test_an_export_goes_on_when_the_panel_that_asked_for_it_closes(session, tmp_path):
    sent: list[dict] = []

    def closed_after_the_first(message: dict) -> None:
        sent.append(message)
        if len(sent) > 1:
            raise RuntimeError("Comm is closed")  # what a reloaded page leaves behind

    reply = comm.handle(
        {"op": "export", "request_id": "c1", "format": "peft", "folder": str(tmp_path / "c")},
        session,
        closed_after_the_first,
    )
    assert reply["ok"] and session.wait_export(300)
    assert session.saved["peft"] == str(tmp_path / "c")
    assert json.loads((tmp_path / "c" / ex.MANIFEST).read_text())["verified"]["greedy_tokens_equal"] == 36


@pytest.mark.parametrize(
    "request_,path,words",
    [
        ({"request_id": "r1"}, "format", "is required"),
        ({"request_id": "r2", "format": "onnx"}, "format", "must be one of"),
        ({"request_id": "r3", "format": "peft", "folder": ""}, "folder", ""),
    ],
)
def test_a_bad_export_request_names_the_field(session, request_, path, words):
    reply, events = export(session, request_)
    assert reply["ok"] is False and reply["error"]["path"] == path and words in reply["error"]["message"], reply
    assert events.sent == []


def test_without_an_adapter_peft_is_refused_with_what_to_do(tmp_path):
    bare = session_module.Session(
        {"model": {"name_or_path": "embedded:tiny"}, "training": {"output_dir": str(tmp_path)}}
    )
    reply, _ = export(bare, {"request_id": "n1", "format": "peft"})
    assert reply["error"]["path"] == "format"
    assert reply["error"]["message"].startswith("peft exports an adapter and there is none; run `%oss_finetune lora`")
    assert not (tmp_path / "peft").exists()


def test_a_folder_of_other_files_is_refused_before_anything_is_written(session, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    reply, _ = export(session, {"request_id": "f1", "format": "merged", "folder": str(tmp_path)})
    assert reply["error"] == {
        "path": "folder",
        "message": f"{tmp_path} holds files that are not an export of ours; name another folder",
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_export_is_refused_while_a_run_trains(session):
    session.trainer = SimpleNamespace(status="running", run_id="run-7")
    try:
        reply, _ = export(session, {"request_id": "t1", "format": "peft"})
    finally:
        session.trainer = None
    assert reply["ok"] is False
    assert reply["error"]["message"].startswith("cannot save while run run-7 is training; stop it first")


def test_a_check_that_fails_ends_the_export_with_the_error_and_the_kernel_carries_on(session, tmp_path, monkeypatch):
    def differs(*_args, **_kwargs):
        raise ex.ExportMismatch("peft export does not answer like the live model: probe 1, generated token 3")

    monkeypatch.setattr(ex, "verify_export", differs)
    reply, events = export(session, {"request_id": "m1", "format": "peft", "folder": str(tmp_path / "p")})
    assert reply["ok"] is True
    last = events.of("m1")[-1]
    assert last["ok"] is False and "generated token 3" in last["error"]["message"]
    assert not session.is_exporting()
    monkeypatch.undo()
    reply, events = export(session, {"request_id": "m2", "format": "peft", "folder": str(tmp_path / "p")})
    assert events.of("m2")[-1]["payload"]["stage"] == "done"


def test_the_serve_command_of_each_format(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 4}))
    assert ex.serve_command("vllm", tmp_path, "openai/gpt-oss-20b") == (
        f"vllm serve openai/gpt-oss-20b --enable-lora --lora-modules mine={tmp_path} --max-lora-rank 8"
    )
    assert ex.serve_command("mxfp4", "out dir", "x") == "vllm serve 'out dir'"
    assert ex.serve_command("gguf", "out", "x") == "llama-server -m out/model.gguf --jinja"


def test_save_format_in_a_cell_also_says_what_serves_the_folder(shell, capsys, tmp_path):
    session = session_module.reset_session(
        {"model": {"name_or_path": "embedded:tiny", "dtype": "float32"}, "training": {"output_dir": str(tmp_path)}}
    )
    session.lora()
    capsys.readouterr()
    assert shell.run_cell(f"%oss_finetune save --format peft {tmp_path / 'out'}").success
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == (
        f"load it with: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('embedded:tiny'), "
        f"'{tmp_path / 'out'}')"
    )
    assert not session.is_exporting()
