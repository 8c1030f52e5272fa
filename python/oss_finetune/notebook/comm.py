"""The ``oss_finetune`` comm: the widgets' way into the kernel's Session.

Protocol (schema/comm-message.schema.json): the widget sends ``{op, request_id, ...}``; the kernel
answers every request with one reply ``{op, request_id, ok: true, result}`` or
``{op, request_id, ok: false, error: {path, message}}``. A run started with ``start_training``
trains in a background thread, so the kernel keeps answering (``stop`` included), and sends
``{op: 'training_update', request_id, ok: true, payload}`` events carrying training-run payloads. Every
open comm also follows the runs it did not start (``request_id: 'run:<run_id>'``). An ``export`` writes and
checks its files in a background thread too: its reply names the folder at once, then
``{op: 'export_update', request_id, ok, payload | error}`` events say each step, the last one its result.

Nothing a widget sends can take the kernel down: every message is validated first, and every
failure while handling it becomes an error reply.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Union

from ..core import schema
from ..core.comm_types import (
    ExportDone,
    ExportResult,
    ExportStep,
    GetConfigResult,
    ListRunsResult,
    ReadMetricsResult,
    SetConfigResult,
    StartTrainingResult,
    StopResult,
)
from .session import Session, SessionError, get_session, watch_runs

TARGET = "oss_finetune"
log = logging.getLogger(__name__)

# Arguments an op cannot do without; the schema keeps them optional because it describes every op at once.
REQUIRED = {"set_config": ("config",), "read_metrics": ("run_id",), "export": ("format",)}
REQUEST_OPS = ("get_config", "set_config", "start_training", "stop", "list_runs", "read_metrics", "export")


def error_reply(request: Any, path: str, message: str) -> dict:
    request = request if isinstance(request, dict) else {}
    op, request_id = request.get("op"), request.get("request_id")
    # Echo what can be echoed, so the widget can still match the reply to its request.
    return {
        "op": op if op in REQUEST_OPS else "error",
        "request_id": request_id if isinstance(request_id, str) and 0 < len(request_id) <= 200 else "unknown",
        "ok": False,
        "error": {"path": path, "message": message},
    }


def _prefixed(prefix: str, error: schema.SchemaError) -> tuple[str, str]:
    path = error.path if error.path != "(root)" else ""
    return (f"{prefix}.{path}" if path else prefix), error.message


def handle(
    request: Any,
    session: Session | None = None,
    send: Callable[[dict], Any] | None = None,
    started: Callable[[str], Any] | None = None,
) -> dict:
    """Answer one request; never raises (but KeyboardInterrupt). ``send`` carries the events of a started run,
    and ``started`` is told its run_id at each of them."""
    session = session or get_session()
    try:
        schema.validate("comm-message", request)
    except schema.SchemaError as error:
        return error_reply(request, error.path, error.message)
    op = request["op"]
    if op not in REQUEST_OPS:
        return error_reply(request, "op", f"{op} is sent by the kernel, not a request")
    for name in REQUIRED.get(op, ()):
        if name not in request:
            return error_reply(request, name, "is required")
    try:
        result = _dispatch(op, request, session, send, started)
    except KeyboardInterrupt:
        raise
    except schema.SchemaError as error:
        prefix = "config" if op in ("set_config", "start_training") and error.schema == "finetune-config" else ""
        path, message = _prefixed(prefix, error) if prefix else (error.path, error.message)
        return error_reply(request, path, message)
    except SessionError as error:
        return error_reply(request, error.path or "(root)", error.message)
    except Exception as error:  # noqa: BLE001 - an error reply, never a dead kernel
        log.debug("comm request %s failed", op, exc_info=True)
        return error_reply(
            request,
            "(root)",
            f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}",
        )
    return {"op": op, "request_id": request["request_id"], "ok": True, "result": result}


# Each op's result, as generated from schema/comm-operations.schema.json.
CommResult = Union[
    GetConfigResult, SetConfigResult, StartTrainingResult, StopResult, ListRunsResult, ReadMetricsResult, ExportResult
]


def _dispatch(
    op: str,
    request: dict,
    session: Session,
    send: Callable[[dict], Any] | None,
    started: Callable[[str], Any] | None = None,
) -> CommResult:
    if op == "get_config":
        return GetConfigResult(config=session.get_config(), defaults=session.defaults())
    if op == "set_config":
        config = session.set_config(request["config"], replace=bool(request.get("replace")))
        return SetConfigResult(config=config, defaults=session.defaults())
    if op == "start_training":
        if request.get("config"):
            session.set_config(request["config"])
        request_id = request["request_id"]

        def on_update(payload: dict) -> None:
            if started is not None:
                started(payload.get("run_id", ""))
            if send is not None:
                send({"op": "training_update", "request_id": request_id, "ok": True, "payload": payload})

        def on_error(error: BaseException) -> None:
            if send is not None:
                send({"op": "training_update", "request_id": request_id, "ok": False, "error": error_fields(error)})

        session.start_training(resume_from=request.get("resume_from"), on_update=on_update, on_error=on_error)
        return StartTrainingResult(started=True)
    if op == "stop":
        return StopResult(run_id=session.stop("stopped from the widget"))
    if op == "list_runs":
        return ListRunsResult(runs=[run.to_dict() for run in session.list_runs()])  # type: ignore[misc]
    if op == "read_metrics":
        run_id = request["run_id"]
        return ReadMetricsResult(run_id=run_id, metrics=session.read_metrics(run_id, request.get("since_step", 0)))
    if op == "export":
        return _start_export(request, session, send)
    raise SessionError(f"unknown op {op}", "op")


def error_fields(error: BaseException) -> dict:
    """{path, message} of a failure in a background thread, as an error reply has them."""
    if isinstance(error, schema.SchemaError):
        return {"path": error.path, "message": error.message}
    path = getattr(error, "path", None) or "(root)"
    return {"path": path, "message": str(error).strip() or type(error).__name__}


def export_done(result, base_model: str) -> ExportDone:
    """An export's result as the widgets receive it."""
    from ..modeling import export as exports

    check = result.verification
    return ExportDone(
        stage="done",
        message=result.line(),
        format=result.format,
        folder=str(result.path),
        bytes=result.bytes,
        size=result.size,
        seconds=round(result.seconds, 3),
        verification=check.text() if check is not None else "NOT verified",
        logits_compared=bool(check is not None and check.probes),
        serve=exports.serve_command(result.format, result.path, base_model),
    )


def _start_export(request: dict, session: Session, send: Callable[[dict], Any] | None) -> ExportResult:
    request_id = request["request_id"]

    def event(body: dict) -> None:
        if send is None:
            return
        try:
            send({"op": "export_update", "request_id": request_id, **body})
        except Exception:  # noqa: BLE001 - a panel closed mid-export must not fail the export it asked for
            pass

    def on_progress(stage: str, line: str) -> None:
        event({"ok": True, "payload": ExportStep(stage=stage, message=line)})  # type: ignore[typeddict-item]

    def on_done(result) -> None:
        event({"ok": True, "payload": export_done(result, session.loaded.name_or_path)})

    def on_error(error: BaseException) -> None:
        fields = error_fields(error)
        # The export module calls the folder "path"; the request calls it "folder".
        if fields["path"] == "path":
            fields["path"] = "folder"
        event({"ok": False, "error": fields})

    folder = session.start_export(
        request["format"], request.get("folder"), on_progress=on_progress, on_done=on_done, on_error=on_error
    )
    return ExportResult(started=True, folder=str(folder))


def followed_request_id(run_id: str) -> str:
    """The request_id on the events of a run that the receiving widget did not start."""
    return f"run:{run_id}"


class Channel:
    """One open comm: requests in, replies and events out. It follows every run of the kernel: the runs
    it started send their events with the start request's id, any other run (a magic's, another
    widget's, one running when it opened) with ``followed_request_id``, so a widget that opens or
    reopens its comm mid-run sees the run live."""

    def __init__(self, comm, session: Session | None = None):
        self.comm = comm
        self.session = session
        self.own_runs: set[str] = set()
        self.unwatch = watch_runs(self.follow)

    def send(self, message: dict) -> None:
        try:
            self.comm.send(message)
        except Exception:  # noqa: BLE001 - a closed comm must not break a training thread
            log.debug("could not send on the oss_finetune comm", exc_info=True)

    def follow(self, payload: dict) -> None:
        if getattr(self.comm, "_closed", False):  # closed without a word to this side, e.g. by a kernel restart
            self.unwatch()
            return
        run_id = str(payload.get("run_id") or "")
        if run_id and run_id not in self.own_runs:
            self.send(
                {"op": "training_update", "request_id": followed_request_id(run_id), "ok": True, "payload": payload}
            )

    def on_msg(self, msg: dict) -> None:
        try:
            data = msg.get("content", {}).get("data") if isinstance(msg, dict) else None
        except AttributeError:
            data = None
        self.send(handle(data, self.session, self.send, self.own_runs.add))

    def on_close(self, _msg: dict | None = None) -> None:
        self.unwatch()


def _on_open(comm, open_msg: dict) -> None:
    channel = Channel(comm)
    comm.on_msg(channel.on_msg)
    comm.on_close(channel.on_close)
    data = (open_msg or {}).get("content", {}).get("data")
    # A widget may put its first request in the open message itself.
    if isinstance(data, dict) and data:
        channel.on_msg(open_msg)


def register(ipython=None) -> bool:
    """Register the comm target with the kernel; False where there is no kernel (a plain IPython shell)."""
    kernel = getattr(ipython, "kernel", None) if ipython is not None else None
    if kernel is None:
        return False
    try:
        from comm import get_comm_manager

        get_comm_manager().register_target(TARGET, _on_open)
    except Exception:  # noqa: BLE001 - the magics still work without the widgets' channel
        log.warning("could not register the %s comm target", TARGET, exc_info=True)
        return False
    return True
