"""Generated from schema/comm-operations.schema.json by schema/scripts/gen_python.py; do not edit.

The widgets' comm, one operation at a time: what each request carries, what its reply's result
holds, and the training_update events. The kernel validates what it receives against
comm-message.schema.json; these are the shapes that code in both languages is written against.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union

if TYPE_CHECKING:
    from typing_extensions import NotRequired


class GetConfigRequest(TypedDict):
    """get_config: the kernel's current fine-tune config. No arguments."""

    op: Literal["get_config"]
    request_id: str


class GetConfigResult(TypedDict):
    """The kernel's config, complete (every default filled in), and the defaults alone."""

    config: dict[str, Any]
    defaults: dict[str, Any]


class GetConfigReply(TypedDict):
    op: Literal["get_config"]
    request_id: str
    ok: Literal[True]
    result: GetConfigResult


class SetConfigRequest(TypedDict):
    """set_config: a partial config merged into the kernel's (sections merged, lists and scalars replaced), or the whole config with replace: true. Validated against finetune-config before anything changes; its errors are reported under config., e.g. config.lora.r."""

    op: Literal["set_config"]
    request_id: str
    config: dict[str, Any]
    replace: NotRequired[bool]


class SetConfigResult(TypedDict):
    """The kernel's config after the change, complete, and the defaults alone."""

    config: dict[str, Any]
    defaults: dict[str, Any]


class SetConfigReply(TypedDict):
    op: Literal["set_config"]
    request_id: str
    ok: Literal[True]
    result: SetConfigResult


class StartTrainingRequest(TypedDict):
    """start_training: trains in a background thread of the kernel, which keeps answering; the run's events come as training_update with this request's request_id."""

    op: Literal["start_training"]
    request_id: str
    config: NotRequired[dict[str, Any]]
    resume_from: NotRequired[str | None]


class StartTrainingResult(TypedDict):
    """The run was started; a refusal (another run trains, no checkpoint to resume) is an error reply instead."""

    started: Literal[True]


class StartTrainingReply(TypedDict):
    op: Literal["start_training"]
    request_id: str
    ok: Literal[True]
    result: StartTrainingResult


class StopRequest(TypedDict):
    """stop: asks the kernel's current run to stop after its current step and write a checkpoint. The kernel trains one run at a time, so none is named. No arguments."""

    op: Literal["stop"]
    request_id: str


class StopResult(TypedDict):
    run_id: str | None


class StopReply(TypedDict):
    op: Literal["stop"]
    request_id: str
    ok: Literal[True]
    result: StopResult


class ListRunsRequest(TypedDict):
    """list_runs: every run folder under training.output_dir. No arguments."""

    op: Literal["list_runs"]
    request_id: str


class RunInfo(TypedDict):
    """One run folder as the kernel describes it; the live run's status, step and message come from its trainer."""

    run_id: str
    run_dir: str
    status: Literal["pending", "running", "stopping", "stopped", "completed", "failed"]
    step: int
    max_steps: int | None
    checkpoint: str | None
    last_loss: float | None
    started_at: str | None
    updated_at: str | None
    message: str | None
    adapter: str | None


class ListRunsResult(TypedDict):
    runs: list[RunInfo]


class ListRunsReply(TypedDict):
    op: Literal["list_runs"]
    request_id: str
    ok: Literal[True]
    result: ListRunsResult


class ReadMetricsRequest(TypedDict):
    """read_metrics: the logged steps of one run, from its metrics.jsonl."""

    op: Literal["read_metrics"]
    request_id: str
    run_id: str
    since_step: NotRequired[int]


class ReadMetricsResult(TypedDict):
    run_id: str
    metrics: list[dict[str, Any]]


class ReadMetricsReply(TypedDict):
    op: Literal["read_metrics"]
    request_id: str
    ok: Literal[True]
    result: ReadMetricsResult


class ExportRequest(TypedDict):
    """export: writes the fine-tune in a serving format, reads it back with the program that serves it and compares it with the model in the kernel (docs/export.md), as `%oss_finetune save --format` does. It runs in a background thread of the kernel, which keeps answering; its steps and its result come as export_update events with this request's request_id. Refused while a run trains or another export is being written."""

    op: Literal["export"]
    request_id: str
    format: Literal["peft", "merged", "mxfp4", "vllm", "gguf"]
    folder: NotRequired[str | None]


class ExportResult(TypedDict):
    """The export was started; a refusal (a run trains, no adapter for peft or vllm, a folder holding other files) is an error reply instead."""

    started: Literal[True]
    folder: str


class ExportReply(TypedDict):
    op: Literal["export"]
    request_id: str
    ok: Literal[True]
    result: ExportResult


class ExportStep(TypedDict):
    """A step of an export in one line: a step done on the way (preparing, e.g. the model loaded), the files being written (writing) or read back and compared (checking)."""

    stage: Literal["preparing", "writing", "checking"]
    message: str


class ExportDone(TypedDict):
    """A written and checked export."""

    stage: Literal["done"]
    message: str
    format: Literal["peft", "merged", "mxfp4", "vllm", "gguf"]
    folder: str
    bytes: int
    size: str
    seconds: float
    verification: str
    logits_compared: bool
    serve: str


class ExportProgressEvent(TypedDict):
    op: Literal["export_update"]
    request_id: str
    ok: Literal[True]
    payload: dict[str, Any]


class ExportErrorEvent(TypedDict):
    """The export failed in its thread: where and why. An export that does not answer like the live model fails here, naming the probe and the first differing token; its files are left to inspect."""

    op: Literal["export_update"]
    request_id: str
    ok: Literal[False]
    error: dict[str, Any]


class ErrorReply(TypedDict):
    """A refused request, of any op: the first broken rule. A message whose op could not be read is answered with op 'error' (and request_id 'unknown' when that could not be read either)."""

    op: Literal["get_config", "set_config", "start_training", "stop", "list_runs", "read_metrics", "export", "error"]
    request_id: str
    ok: Literal[False]
    error: dict[str, Any]


class TrainingProgressEvent(TypedDict):
    op: Literal["training_update"]
    request_id: str
    ok: Literal[True]
    payload: dict[str, Any]


class TrainingErrorEvent(TypedDict):
    """The run failed in its thread: where and why."""

    op: Literal["training_update"]
    request_id: str
    ok: Literal[False]
    error: dict[str, Any]


CommRequest = Union[GetConfigRequest, SetConfigRequest, StartTrainingRequest, StopRequest, ListRunsRequest, ReadMetricsRequest, ExportRequest]
CommReply = Union[GetConfigReply, SetConfigReply, StartTrainingReply, StopReply, ListRunsReply, ReadMetricsReply, ExportReply, ErrorReply]
TrainingUpdateEvent = Union[TrainingProgressEvent, TrainingErrorEvent]
ExportUpdateEvent = Union[ExportProgressEvent, ExportErrorEvent]
