"""The kernel-side state shared by the ``%oss_finetune`` magics and the ``oss_finetune`` comm.

One ``Session`` per kernel (``get_session()``) holds the current fine-tune config (always complete:
validated, every default filled in), the loaded model, the prepared data, the adapter and the
current or last training run. Both front ends call the same methods, so a widget and a cell never
disagree about what is loaded or running.

What must survive a kernel restart lives on disk, in the run folders under
``training.output_dir``: the trainer writes config.json, metrics.jsonl and checkpoints; the session
adds ``state.json`` (the last training-run payload), so that ``status`` after a restart, or a
reopened notebook, still lists every run with how it ended.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import json
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from ..core import schema
from ..core.config import SECTIONS as CONFIG_SECTIONS
from ..core.config import FinetuneConfig, deep_merge
from ..core.errors import UserError
from ..core.harmony import EFFORTS  # noqa: F401 - the magics import it from here
from ..training.runs import (  # noqa: F401 - also the session's surface
    STATE_FILE,
    RunInfo,
    describe_run_folder,
    latest_checkpoint,
    read_json,
    read_metrics_file,
    write_state,
)

SECTIONS = tuple(CONFIG_SECTIONS)
# Run ids become folder names; anything else could walk out of output_dir.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class SessionError(UserError, RuntimeError):
    """A request the session cannot carry out as asked; the message says what to do instead.

    ``path`` names the config field or argument at fault when there is one (as in SchemaError).
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path
        self.message = message


merge_config = deep_merge  # changes laid over a config: sections merged, lists and scalars replaced

# Where the one-line notes of automatic steps go ("loaded ...", "prepared ...", "LoRA: ..."): the magics
# point it at the cell's output while they run; elsewhere (the comm's training thread, a torchrun rank, code
# calling the session) steps stay quiet.
_NOTES: contextvars.ContextVar[Callable[[str], Any] | None] = contextvars.ContextVar("oss_finetune_notes", default=None)


@contextlib.contextmanager
def reporting(say: Callable[[str], Any]) -> Iterator[None]:
    """Send the session's step notes to ``say`` within the block."""
    token = _NOTES.set(say)
    try:
        yield
    finally:
        _NOTES.reset(token)


def note(text: str) -> None:
    say = _NOTES.get()
    if say is not None:
        say(text)


def default_model() -> str:
    return FinetuneConfig().model.name_or_path


def loaded_line(loaded, *, short: bool = False) -> str:
    """What a load says: the full description, or (``short``, for a load that happened on the way) name and
    device. The default and the random embedded models say which they are."""
    from ..embedded import EMBEDDED_RANDOM, EMBEDDED_TINY
    from ..modeling import sources

    name = loaded.name_or_path
    if name == default_model():
        kind = "the trained offline default"
    elif name in (EMBEDDED_TINY, *EMBEDDED_RANDOM):
        # Its babble looks like a broken install unless it says what it is.
        kind = f"{sources.source_for(name).summary}, for tests and benches; {default_model()} is the trained one"
    else:
        kind = ""
    if short:
        dtype = str(loaded.dtype).removeprefix("torch.")
        return f"loaded {name}{f' ({kind})' if kind else ''} on {loaded.device} in {dtype}"
    return f"loaded {loaded.description}{f' — {kind}' if kind else ''}"


def data_line(prepared) -> str:
    summary = prepared.summary
    over = summary["over_limit"]
    dropped = (
        f"; {over['rows']:,} over max_seq_length {summary['max_seq_length']} "
        f"{'truncated' if over['action'] == 'truncate' else 'left out'}"
        if over["rows"]
        else ""
    )
    return (
        f"prepared {summary['source']}: {summary['rows']:,} rows, {summary['tokens_trained']:,} of "
        f"{summary['tokens_total']:,} tokens trained (loss mask {summary.get('loss_mask', '?')}){dropped}"
    )


class Session:
    """Everything the notebook has loaded and trained so far. Thread-safe where the comm needs it."""

    def __init__(self, config: dict | None = None):
        self._lock = threading.RLock()
        self.settings = FinetuneConfig.from_dict(config or {})
        # Filled in on demand (ensure_loaded, ensure_data, train), so typed Any rather than Optional.
        self.loaded: Any = None  # model.LoadedModel
        self.model = None  # the peft model once an adapter is on, else the base model
        self.adapter_settings: dict | None = None  # the lora section the adapter was built with
        self.prepared: Any = None  # data.Prepared
        self._prepared_key: str | None = None
        self.trainer: Any = None  # trainer.Trainer
        self.last_result: Any = None  # trainer.TrainResult
        self.evaluations: dict[str, Any] = {}  # label -> language.LanguageRate or tool_calls.ToolCallRate
        self._thread: threading.Thread | None = None
        self.saved: dict[str, str] = {}
        self._export_thread: threading.Thread | None = None
        # The export being written: its format, its folder and the thread that writes it.
        self._exporting: tuple[str, Path, threading.Thread] | None = None

    # -- config --------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The whole config as a dict (a fresh copy; ``settings`` is the typed one)."""
        return self.settings.to_dict()

    def get_config(self) -> dict:
        with self._lock:
            return self.settings.to_dict()

    def _with(self, section: str, changes: dict | None) -> FinetuneConfig:
        """The config with ``changes`` laid over one section, validated and not yet adopted."""
        if not changes:
            return self.settings
        partial = {section: changes}
        schema.validate("finetune-config", partial)
        return self.settings.merged(partial)

    def set_config(self, changes: dict | None = None, *, replace: bool = False) -> dict:
        """Merge a partial config (or replace the whole one) after validating it; returns the full config."""
        if changes is None:
            changes = {}
        schema.validate("finetune-config", changes)
        with self._lock:
            self.settings = FinetuneConfig.from_dict(changes) if replace else self.settings.merged(changes)
            return self.settings.to_dict()

    def defaults(self) -> dict:
        return FinetuneConfig().to_dict()

    # -- model ---------------------------------------------------------------------------------
    def load(self, changes: dict | None = None) -> Any:
        """Load the model of ``config.model`` (after merging ``changes`` into it). A load that fails changes
        nothing: the config keeps the model that is loaded, so the next step does not try the failed one again."""
        from ..modeling.model import load_model

        self._refuse_while_training("load a model")
        settings = self._with("model", changes)
        self.check_model_source(settings.model.name_or_path)
        loaded = load_model(settings.model)
        with self._lock:
            if changes:
                self.settings = self.settings.merged({"model": changes})
            self.loaded = loaded
            self.model = loaded.model
            self.adapter_settings = None
            # The tokenizer may have changed, so prepared data is stale.
            self.prepared = None
            self._prepared_key = None
            return self.loaded

    def check_model_source(self, name: str | None = None) -> None:
        """Fail at once, saying what to do, when a hub model cannot be fetched from this kernel."""
        from . import hub

        hub.check(name or self.settings.model.name_or_path)

    def _loaded_as_configured(self):
        """The loaded model when it is the one ``config.model`` names, else None."""
        if self.loaded is not None and self.loaded.config == self.config["model"]:
            return self.loaded
        return None

    def ensure_loaded(self):
        self._refuse_while_exporting("use the model")
        if self._loaded_as_configured() is None:
            note(loaded_line(self.load(), short=True))
        return self.loaded

    # -- data ----------------------------------------------------------------------------------
    def data(self, changes: dict | None = None):
        """Read and tokenize ``config.data``; returns data.Prepared (examples and a dataset-summary payload)."""
        from ..core import data as data_module

        settings = self._with("data", changes)
        # Only the tokenizer is needed: the model already loaded serves even while an export uses it.
        loaded = self._loaded_as_configured() or self.ensure_loaded()
        prepared = data_module.prepare(settings.data, loaded.tokenizer)
        with self._lock:
            if changes:
                self.settings = self.settings.merged({"data": changes})
            self.prepared = prepared
            self._prepared_key = self._data_key()
            return prepared

    def _data_key(self) -> str:
        return json.dumps([self.config["data"], self.settings.model.name_or_path], sort_keys=True)

    def ensure_data(self):
        if self.prepared is None or self._prepared_key != self._data_key():
            note(data_line(self.data()))
        return self.prepared

    def show(self, rows: list[int] | None = None) -> dict:
        """The Harmony token view (with the loss mask) of some prepared rows, as a harmony-tokens payload."""
        prepared = self.ensure_data()
        examples = list(prepared.examples)
        if not examples:
            raise SessionError("the data set has no rows to show")
        rows = rows if rows else [0]
        for row in rows:
            if not 0 <= row < len(examples):
                raise SessionError(
                    f"row {row} does not exist: the prepared data has rows 0 to {len(examples) - 1}", "rows"
                )
        conversations = []
        for row in rows:
            conversation = self._row_view(row)
            conversation["title"] = f"row {row}" + (f" ({conversation['title']})" if conversation.get("title") else "")
            conversations.append(conversation)
        result = {
            "version": 1,
            "title": f"{prepared_source(self)}: {len(rows)} of {len(examples)} rows",
            "conversations": conversations,
        }
        return schema.validate("harmony-tokens", result)

    def _row_view(self, row: int) -> dict:
        """One prepared row as a harmony-tokens conversation, cut where its training example was cut."""
        from ..core import harmony

        prepared = self.prepared
        example = prepared.examples[row]
        rows = getattr(prepared, "rows", None) or []
        if row >= len(rows):
            raise SessionError("the prepared data keeps no conversations to label its tokens")
        rendered = harmony.render(
            rows[row].conversation,
            mode="train",
            loss_mask=self.settings.data.loss_mask,
            tokenizer=self.loaded.tokenizer,
        )
        item = rendered.to_payload(
            title=f"source row {example.row}" + (f", {example.language}" if example.language else "")
        )
        tokens = item["tokens"]
        n = len(example.input_ids)
        if tokens["ids"][:n] != list(example.input_ids):
            # The date line moved between preparing and showing (midnight); the ids trained on are the truth.
            raise SessionError("the data changed since it was prepared; run `%oss_finetune data` again")
        for key in list(tokens):
            if isinstance(tokens[key], list):
                tokens[key] = tokens[key][:n]
        return item

    # -- adapter -------------------------------------------------------------------------------
    def lora(self, changes: dict | None = None):
        """Put a fresh LoRA adapter of ``config.lora`` on the model (replacing any adapter there).

        The target list is checked against the model first (``lora_targets``): MLP names that gpt-oss
        does not have become LoRA on its experts, said in one note, and the config says so from then
        on; a name that matches nothing is refused. A refused adapter changes nothing.
        """
        from ..modeling.model import apply_lora
        from . import lora_targets

        self._refuse_while_training("change the adapter")
        settings = self._with("lora", changes)
        loaded = self.ensure_loaded()
        resolved = lora_targets.resolve(settings.lora.to_dict(), loaded.model, loaded.name_or_path)
        with self._lock:
            base = loaded.model
            if self.model is not None and hasattr(self.model, "unload"):
                # unload() takes the old adapter's layers out again, leaving the base weights as loaded.
                base = self.model.unload()
            self.model = apply_lora(base, resolved.lora, seed=self.settings.training.seed)
            self.loaded.model = base
            self.settings = self.settings.merged({"lora": resolved.lora})
            self.adapter_settings = copy.deepcopy(self.config["lora"])
        if resolved.note:
            note(resolved.note)
        return self.model

    def has_adapter(self) -> bool:
        return self.model is not None and hasattr(self.model, "peft_config")

    def ensure_adapter(self):
        self.ensure_loaded()
        if not self.has_adapter() or self.adapter_settings != self.config["lora"]:
            self.lora()
            note(f"added {self.describe_adapter()}")
        return self.model

    def describe_adapter(self) -> str | None:
        """r, alpha, each target with its parameter count and the trainable total; None without an adapter."""
        from . import lora_targets

        if not self.has_adapter():
            return None
        return lora_targets.describe(self.model, self.adapter_settings or self.config["lora"])

    # -- training ------------------------------------------------------------------------------
    def is_training(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.status in ("pending", "running", "stopping")

    def _refuse_while_training(self, what: str) -> None:
        if self.is_training():
            raise SessionError(
                f"cannot {what} while run {self.trainer.run_id} is training; "
                "stop it first with `%oss_finetune stop` (or interrupt the kernel)"
            )
        self._refuse_while_exporting(what)

    def make_trainer(
        self, changes: dict | None = None, on_update: Callable[[dict], Any] | None = None, *, handle_sigint: bool = True
    ):
        """Everything up to the first step: model, data and adapter as configured, and a Trainer subscribed to updates."""
        from ..training.trainer import Trainer

        if changes:
            self.set_config({"training": changes})
        self._refuse_while_training("start another run")
        self.ensure_loaded()
        prepared = self.ensure_data()
        model = self.ensure_adapter()
        with self._lock:
            trainer = Trainer(
                model,
                prepared.examples,
                self.settings.training,
                run_config=self.get_config(),
                pad_token_id=pad_id(self.loaded.tokenizer),
                handle_sigint=handle_sigint,
            )
            self.trainer = trainer

        def publish(*_):
            payload = trainer.snapshot()
            self._write_state(trainer, payload)
            if on_update is not None:
                on_update(payload)
            _tell_watchers(payload)

        trainer.on_step(publish)
        trainer.on_status(publish)
        return trainer

    # -- memory --------------------------------------------------------------------------------
    def memory_plan(self, changes: dict | None = None):
        """The predicted GPU memory (memory.MemoryPlan) of the current config, with ``changes`` (a partial
        config) laid over it. What is already loaded or prepared makes it exact where it can: the loaded
        model's architecture, device and weight bytes, and the prepared conversations' lengths."""
        from ..training import memory

        config = deep_merge(self.config, changes) if changes else self.get_config()
        kwargs: dict[str, Any] = {}
        loaded = self.loaded
        if loaded is not None and loaded.config == config["model"]:
            kwargs["architecture"] = loaded.model.config
            kwargs["device"] = loaded.device.type
            kwargs["weights_bytes"] = memory.loaded_weight_bytes(loaded.model)
            kwargs["dtype"] = str(loaded.dtype).removeprefix("torch.")
        if self.prepared is not None and self._prepared_key == json.dumps(
            [config["data"], config["model"]["name_or_path"]], sort_keys=True
        ):
            kwargs["lengths"], kwargs["trained_fraction"] = memory.examples_shape(self.prepared.examples)
        return memory.plan_memory(config, **kwargs)

    def fit_training_to_memory(self):
        """The plan for training now, and a note. When the plan will not fit and ``pack_tokens`` is left to
        the fast engine, the largest halving of its pack that fits is set in the config (the same optimizer
        steps in more passes, so nothing about the result changes) and the note says so; else it is ''."""
        plan = self.memory_plan()
        training = self.settings.training
        if plan.fits is not False or plan.engine != "fast" or training.pack_tokens:
            return plan, ""
        start = size = int(plan.settings["pack_tokens"])
        floor = min(size, int(self.settings.data.max_seq_length or size))
        while size > floor:
            size = max(size // 2, floor)
            trial = self.memory_plan({"training": {"pack_tokens": size}})
            if trial.fits:
                self.set_config({"training": {"pack_tokens": size}})
                return trial, (
                    f"packing at most {size:,} tokens per micro-batch instead of {start:,}, so that the "
                    f"run fits (the same optimizer steps, in more passes; set pack_tokens to choose)"
                )
        return plan, ""

    def check_memory(self, *, force: bool = False):
        """The plan for training now (with the pack made smaller where that alone makes it fit); raises
        SessionError when it predicts the GPU will run out, unless ``force``."""
        plan, _note = self.fit_training_to_memory()
        if plan.fits is False and not force:
            raise SessionError(memory_refusal(plan, "training"), "memory")
        return plan

    def train(
        self,
        changes: dict | None = None,
        *,
        resume_from: str | None = None,
        on_update: Callable[[dict], Any] | None = None,
        force: bool = False,
        memory_checked: bool = False,
    ):
        """Train in the calling thread until done, stopped or interrupted; returns train.TrainResult.

        ``on_update`` receives a training-run payload on every logged step and status change.
        ``resume_from`` is a checkpoint folder, or 'latest' for the newest checkpoint in output_dir.
        Before the first step the memory plan is checked: a run predicted not to fit on the GPU is
        refused with the change that makes it fit, unless ``force``; ``memory_checked`` says the caller
        has just done that (the magic, which shows the plan), so it is not planned twice.
        """
        if changes:
            self.set_config({"training": changes})
        # A wrong checkpoint is found out before minutes go into loading a model.
        checkpoint = self.resolve_checkpoint(resume_from) if resume_from else None
        self._refuse_while_training("start another run")
        self.ensure_loaded()
        self.ensure_data()
        if not memory_checked:
            self.check_memory(force=force)
        if int(self.settings.training.gpus or 1) > 1:
            return self._train_with_torchrun(checkpoint, on_update)
        # The first update comes with status 'running', after a resume has set the run's own id and folder.
        trainer = self.make_trainer(None, on_update)
        try:
            result = trainer.train(resume_from=checkpoint)
        finally:
            self._write_state(trainer, trainer.snapshot())
        self.last_result = result
        return result

    def _train_with_torchrun(self, checkpoint: str | None, on_update: Callable[[dict], Any] | None):
        """Train with ranks that torchrun starts (training.gpus of them), following their run folder; the
        adapter they trained comes back into the notebook's model."""
        from ..modeling.adapter import load_adapter_weights, save_adapter
        from ..training.distributed import TeamError, job_gpus, visible_gpus
        from ..training.job import TorchrunJob
        from ..training.trainer import Trainer, TrainingError

        gpus = int(self.settings.training.gpus or 1)
        model = self.ensure_adapter()
        device = self.loaded.device
        try:
            choice = job_gpus(_gpu_index(device), gpus, visible_gpus())
        except TeamError as error:
            raise SessionError(str(error), "training.gpus") from None
        # Never trained: it gives the run's id, folder and first payload as an in-kernel run would have them.
        template = Trainer(
            model, self.prepared.examples, self.settings.training, run_config=self.get_config(), handle_sigint=False
        )
        if checkpoint:
            template.continue_run_of(checkpoint)
        adapter = None
        if not checkpoint:
            # The ranks start from the notebook's adapter (fresh, or trained before), as an in-kernel run does.
            adapter = save_adapter(model, template.run_dir / "adapter-at-start")

        def publish(payload: dict) -> None:
            if on_update is not None:
                on_update(payload)
            _tell_watchers(payload)

        job = TorchrunJob(
            self.get_config(),
            template.snapshot(),
            ranks=gpus,
            resume_from=checkpoint,
            adapter=adapter,
            cuda_visible=choice.visible,
            on_update=publish,
        )
        with self._lock:
            self.trainer = job
        come_back = self._leave_gpu(device) if choice.free_kernel_gpu else None
        try:
            result = job.run()
        finally:
            if come_back is not None:
                come_back()
        self.last_result = result
        if result.checkpoint and result.status in ("completed", "stopped"):
            try:
                load_adapter_weights(self.ensure_adapter(), result.checkpoint)
            except (OSError, ValueError) as error:
                raise TrainingError(f"the ranks trained, but their adapter did not load back: {error}") from error
            note(f"loaded the adapter the ranks trained ({result.checkpoint}) into the notebook's model")
        return result

    def _leave_gpu(self, device) -> Callable[[], None]:
        """Free the GPU the job needs: the notebook's model waits on the host (or, where it cannot move,
        is unloaded); returns what brings it back."""
        import gc

        import torch

        from ..modeling.decoding import release_decoder

        model = self.model if self.model is not None else self.loaded.model
        release_decoder(model)
        try:
            model.to("cpu")
        except Exception as error:  # noqa: BLE001 - quantized weights may refuse to move; unloading still frees
            self.loaded = self.model = self.adapter_settings = self.prepared = self._prepared_key = None
            gc.collect()
            torch.cuda.empty_cache()
            note(
                f"unloaded the notebook's model from {device} for the ranks (it could not move to the host: "
                f"{error}); it loads again when they end"
            )
            return lambda: None
        gc.collect()
        torch.cuda.empty_cache()
        note(f"moved the notebook's model from {device} to the host while the ranks train on its GPU")

        def come_back() -> None:
            model.to(device)
            note(f"moved the notebook's model back to {device}")

        return come_back

    def start_training(
        self,
        changes: dict | None = None,
        *,
        resume_from: str | None = None,
        on_update: Callable[[dict], Any] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
        force: bool = False,
    ) -> threading.Thread:
        """Train in a background thread, so that the kernel keeps answering (the comm's start_training)."""
        self._refuse_while_training("start another run")
        if changes:
            self.set_config({"training": changes})
        if resume_from:
            self.resolve_checkpoint(resume_from)  # fail now, in the reply, not later in the thread

        def run():
            try:
                self.train(resume_from=resume_from, on_update=on_update, force=force)
            except BaseException as error:  # noqa: BLE001 - the thread reports every failure to its caller
                if on_error is not None:
                    on_error(error)

        thread = threading.Thread(target=run, name="oss-finetune-training", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a background run; True when none is left running."""
        return _joined(self._thread, timeout)

    def stop(self, reason: str = "stop requested") -> str | None:
        """Ask the current run to stop after its current step and write a checkpoint. Safe from any thread."""
        trainer = self.trainer
        if trainer is None or not self.is_training():
            return None
        trainer.stop(reason)
        return trainer.run_id

    def resolve_checkpoint(self, resume_from: str) -> str:
        if resume_from == "latest":
            runs = [r for r in self.list_runs() if r.checkpoint]
            if not runs:
                raise SessionError(
                    f"there is no checkpoint to resume from in {self.settings.training.output_dir}; "
                    "train without --resume first",
                    "resume",
                )
            return cast(str, runs[-1].checkpoint)  # runs holds only runs with a checkpoint
        path = Path(resume_from)
        if path.is_dir() and not (path / "trainer_state.json").is_file():
            found = latest_checkpoint(path)
            if found is not None:
                return str(found)
        if not (path / "trainer_state.json").is_file():
            raise SessionError(
                f"{resume_from} is not a checkpoint folder; give a run folder, a checkpoints/step-N folder or 'latest'",
                "resume",
            )
        return str(path)

    def _write_state(self, trainer, payload: dict) -> None:
        write_state(Path(trainer.run_dir), payload)

    # -- runs ----------------------------------------------------------------------------------
    def output_dir(self) -> Path:
        return Path(self.settings.training.output_dir)

    def list_runs(self) -> list[RunInfo]:
        """Every run folder under output_dir, oldest first; the live run's state comes from its trainer."""
        folder = self.output_dir()
        runs = []
        if folder.is_dir():
            for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
                info = describe_run_folder(run_dir)
                if info is not None:
                    runs.append(info)
        trainer = self.trainer
        if trainer is not None:
            for info in runs:
                if info.run_id == trainer.run_id:
                    info.status, info.step, info.message = trainer.status, trainer.step, trainer.message
                    info.checkpoint = trainer.checkpoint or info.checkpoint
        runs.sort(key=lambda r: (r.started_at or "", r.run_id))
        return runs

    def run_dir(self, run_id: str) -> Path:
        if not RUN_ID_PATTERN.match(run_id or ""):
            raise SessionError(f"{run_id!r} is not a run id (letters, digits, '.', '_' and '-')", "run_id")
        path = self.output_dir() / run_id
        if not (path / "config.json").is_file():
            known = ", ".join(r.run_id for r in self.list_runs()[-5:]) or "none yet"
            raise SessionError(f"there is no run {run_id!r} in {self.output_dir()} (recent runs: {known})", "run_id")
        return path

    def read_metrics(self, run_id: str, since_step: int = 0) -> list[dict]:
        return read_metrics_file(self.run_dir(run_id), since_step)

    def last_run_payload(self) -> dict | None:
        """The training-run payload of the current or newest run, live or from its state.json."""
        if self.trainer is not None:
            return self.trainer.snapshot()
        for info in reversed(self.list_runs()):
            state = read_json(Path(info.run_dir) / STATE_FILE)
            if isinstance(state, dict):
                state = dict(
                    state, status=info.status, step=info.step, message=info.message, checkpoint=info.checkpoint
                )
                try:
                    return schema.validate("training-run", state)
                except schema.SchemaError:
                    return None
        return None

    def status(self) -> dict:
        """A summary of the session: model, data, adapter, current run and every run on disk."""
        prepared = self.prepared
        return {
            "model": self.loaded.description if self.loaded is not None else None,
            "data": prepared.summary if prepared is not None else None,
            "adapter": self.describe_adapter(),
            "training": self.trainer.run_id if self.is_training() else None,
            "output_dir": str(self.output_dir()),
            "runs": [r.to_dict() for r in self.list_runs()],
            "saved": dict(self.saved),
        }

    # -- generation ----------------------------------------------------------------------------
    def _chat_prompt(self, message: str, effort: str | None, language: str | None, tools: list[dict] | None = None):
        """The model to answer with, its tokenizer, the rendered prompt and the view's title."""
        from ..core import harmony

        effort = effort or self.settings.data.reasoning_effort
        if effort not in EFFORTS:
            raise SessionError(f"reasoning effort {effort!r} is not one of {', '.join(EFFORTS)}", "effort")
        self.ensure_loaded()
        model = self.model if self.model is not None else self.loaded.model
        tokenizer = self.loaded.tokenizer
        conversation = chat_conversation(message, effort, language, tools)
        prompt = harmony.render(
            conversation, mode="prompt", loss_mask=self.settings.data.loss_mask, tokenizer=tokenizer
        )
        title = (
            f"chat ({effort} effort"
            + (f", reasoning in {language}" if language else "")
            + (f", {len(tools)} tools" if tools else "")
            + ")"
        )
        return model, tokenizer, prompt, title

    def data_tools(self) -> list[dict] | None:
        """The data set's function tools: ``data.tools``, else those of its first row that has any."""
        from ..core.data import data_set_tools

        tools = data_set_tools(self.settings.data.tools)
        if tools:
            return tools
        for row in getattr(self.ensure_data(), "rows", None) or []:
            if row.conversation.tools:
                return list(row.conversation.tools)
        return None

    def chat(
        self,
        message: str,
        *,
        effort: str | None = None,
        language: str | None = None,
        max_new_tokens: int = 64,
        use_adapter: bool = True,
        temperature: float = 0.0,
        tools: list[dict] | None = None,
        on_token: Callable[[int], Any] | None = None,
    ) -> dict:
        """Answer ``message``; returns {'analysis', 'final', 'payload' (harmony-tokens), 'error'}.
        ``tools``: function tools offered in the prompt (a call ends the answer at ``<|call|>``).
        ``on_token(id)`` receives each new token as it comes."""
        from ..training.generation import generate

        model, tokenizer, prompt, title = self._chat_prompt(message, effort, language, tools)
        new_ids = generate(
            model,
            tokenizer,
            list(prompt.ids),
            max_new_tokens,
            temperature=temperature,
            use_adapter=use_adapter,
            seed=self.settings.training.seed,
            on_token=on_token,
        )
        return harmony_reply(tokenizer, prompt, new_ids, title=title)

    def chat_before_after(
        self,
        message: str,
        *,
        effort: str | None = None,
        language: str | None = None,
        max_new_tokens: int = 64,
        tools: list[dict] | None = None,
        on_token: Callable[[int, int], Any] | None = None,
    ) -> dict:
        """The same question answered by the base model and with the adapter, as one side-by-side payload.

        Both answers come from one batch: row 0 without the adapter, row 1 with it (``on_token(row, id)``
        streams them). Returns {'before': reply, 'after': reply, 'payload'}: each reply as from ``chat``;
        the payload's ``tokens`` stream is the base model's answer and ``compare`` the adapted one's.
        """
        from ..training.generation import generate_many

        if not self.has_adapter():
            raise SessionError("there is no adapter to compare with; run `%oss_finetune lora` and train first")
        model, tokenizer, prompt, title = self._chat_prompt(message, effort, language, tools)
        base_ids, adapted_ids = generate_many(
            model,
            [list(prompt.ids)] * 2,
            max_new_tokens,
            adapter_rows=[False, True],
            tokenizer=tokenizer,
            seed=self.settings.training.seed,
            on_token=on_token,
        )
        before = harmony_reply(tokenizer, prompt, base_ids, title=title)
        after = harmony_reply(tokenizer, prompt, adapted_ids, title=title)
        conversation = copy.deepcopy(before["payload"]["conversations"][0])
        adapted = after["payload"]["conversations"][0]
        conversation["tokens"]["label"] = "base model"
        adapted["tokens"]["label"] = "with adapter"
        conversation["compare"] = adapted["tokens"]
        # The two answers differ in length and messages; the view needs every message either stream uses.
        known = {m["index"] for m in conversation["messages"]}
        conversation["messages"] += [m for m in adapted["messages"] if m["index"] not in known]
        conversation["title"] = f"{title}: base model | with adapter"
        payload = {"version": 1, "title": "before / after the adapter", "conversations": [conversation]}
        return {"before": before, "after": after, "payload": schema.validate("harmony-tokens", payload)}

    def evaluate(
        self,
        source: str = "embedded:multilingual-heldout",
        *,
        effort: str | None = None,
        use_adapter: bool = True,
        limit: int | None = None,
        max_new_tokens: int = 160,
        label: str | None = None,
        batch_size: int | None = None,
        on_progress: Callable[[int, int], Any] | None = None,
    ):
        """How often the model reasons in the requested language on held-out questions (language.LanguageRate).

        The result is kept under ``label`` (default "with adapter" or "base model") for the summary.
        ``batch_size`` prompts generate at once (default language.DEFAULT_BATCH); ``on_progress(done, total)``
        follows the questions as they finish.
        """
        from ..training.language import DEFAULT_BATCH, reasoning_language_rate

        effort, model, use_adapter, rows = self._evaluation_inputs(source, effort, use_adapter, limit)
        rate = reasoning_language_rate(
            model,
            self.loaded.tokenizer,
            rows,
            effort,
            max_new_tokens=max_new_tokens,
            use_adapter=use_adapter,
            batch_size=batch_size or DEFAULT_BATCH,
            on_progress=on_progress,
        )
        self.evaluations[label or ("with adapter" if use_adapter else "base model")] = rate
        return rate

    def evaluate_tools(
        self,
        source: str = "embedded:tool-calls-heldout",
        *,
        effort: str | None = None,
        use_adapter: bool = True,
        limit: int | None = None,
        max_new_tokens: int | None = None,
        label: str | None = None,
        batch_size: int | None = None,
        on_progress: Callable[[int, int], Any] | None = None,
    ):
        """How well the model calls the tools of held-out rows (tool_calls.ToolCallRate): well-formed calls,
        the right tool, arguments valid against its schema. Rows without tools of their own get ``data.tools``.

        Kept under ``label`` (default "tool calls, with adapter" or "tool calls, base model") for the summary;
        ``batch_size`` and ``on_progress`` as in ``evaluate``.
        """
        from ..core.data import data_set_tools
        from ..training.tool_calls import DEFAULT_BATCH, DEFAULT_NEW_TOKENS, tool_call_rate

        effort, model, use_adapter, rows = self._evaluation_inputs(source, effort, use_adapter, limit)
        rate = tool_call_rate(
            model,
            self.loaded.tokenizer,
            rows,
            tools=data_set_tools(self.settings.data.tools),
            effort=effort,
            max_new_tokens=max_new_tokens or DEFAULT_NEW_TOKENS,
            use_adapter=use_adapter,
            batch_size=batch_size or DEFAULT_BATCH,
            on_progress=on_progress,
        )
        self.evaluations[label or f"tool calls, {'with adapter' if use_adapter else 'base model'}"] = rate
        return rate

    def _evaluation_inputs(self, source: str, effort: str | None, use_adapter: bool, limit: int | None):
        """What both evaluations start from: the effort (checked), the model, whether the adapter is on,
        and the held-out rows."""
        from ..core.data import read_rows

        effort = effort or self.settings.data.reasoning_effort
        if effort not in EFFORTS:
            raise SessionError(f"reasoning effort {effort!r} is not one of {', '.join(EFFORTS)}", "effort")
        self.ensure_loaded()
        model = self.model if self.model is not None else self.loaded.model
        return effort, model, use_adapter and self.has_adapter(), read_rows(source, limit=limit)

    def compare(self, row: int = 0) -> dict:
        """Row ``row`` scored token by token without and with the adapter: a harmony payload with ``compare``."""
        from ..training.generation import token_logprobs

        prepared = self.ensure_data()
        self.ensure_loaded()
        if not self.has_adapter():
            raise SessionError("there is no adapter to compare with; run `%oss_finetune lora` and train first")
        examples = list(prepared.examples)
        if not 0 <= row < len(examples):
            raise SessionError(f"row {row} does not exist: the prepared data has rows 0 to {len(examples) - 1}", "row")
        example = examples[row]
        ids, trained = list(example.input_ids), list(example.trained)
        before = token_logprobs(self.model, ids, trained, use_adapter=False)
        after = token_logprobs(self.model, ids, trained, use_adapter=True)
        conversation = self._row_view(row)
        base = conversation["tokens"]
        adapted = copy.deepcopy(base)
        for stream, scores, label in ((base, before, "base model"), (adapted, after, "with adapter")):
            stream["label"] = label
            stream["logprob"] = scores.logprobs
            stream["loss"] = scores.losses
        conversation["compare"] = adapted
        mean_before, mean_after = before.mean_loss, after.mean_loss
        conversation["title"] = (
            f"row {row}: mean loss on trained tokens {_num(mean_before)} (base) -> {_num(mean_after)} (with adapter)"
        )
        payload = {"version": 1, "title": "before / after the adapter", "conversations": [conversation]}
        return schema.validate("harmony-tokens", payload)

    # -- saving --------------------------------------------------------------------------------
    def save(self, path: str | None = None, *, merged: bool = False) -> str:
        """Save the adapter in PEFT format (default: the last run's folder/adapter), or merged full weights."""
        from ..modeling.adapter import merge_adapter, save_adapter

        self._refuse_while_training("save")
        if not self.has_adapter():
            raise SessionError("there is no adapter to save; run `%oss_finetune lora` and `%oss_finetune train` first")
        with self._lock:
            home = Path(self.trainer.run_dir) if self.trainer is not None else self.output_dir()
            if merged:
                target = Path(path) if path else home / "merged"
                # Folding the adapter in consumes the peft wrapper; the adapter goes to disk first so it is not lost.
                self.saved["adapter"] = save_adapter(self.model, (Path(path) / "adapter") if path else home / "adapter")
                merged_model = merge_adapter(self.model, target, tokenizer=self.loaded.tokenizer)
                self.loaded.model = merged_model
                self.model = merged_model
                self.adapter_settings = None
                self.saved["merged"] = str(target)
                return str(target)
            target = Path(path) if path else home / "adapter"
            self.saved["adapter"] = save_adapter(self.model, target)
            return str(target)

    def _check_export(self, fmt: str) -> None:
        from ..modeling import export as exports

        self._refuse_while_training("save")
        if fmt not in exports.FORMATS:
            raise SessionError(f"export format {fmt!r} is not one of {', '.join(exports.FORMATS)}", "format")
        if fmt in ("peft", "vllm") and not self.has_adapter():
            raise SessionError(
                f"{fmt} exports an adapter and there is none; run `%oss_finetune lora` and `%oss_finetune train` "
                "first, or export merged / mxfp4 / gguf",
                "format",
            )

    def export_folder(self, fmt: str, path: str | None = None) -> Path:
        """Where an export of ``fmt`` goes: ``path``, else the format's name in this kernel's last run folder."""
        home = Path(self.trainer.run_dir) if self.trainer is not None else self.output_dir()
        return Path(path).expanduser() if path else home / fmt

    def export(
        self,
        fmt: str,
        path: str | None = None,
        *,
        verify: bool = True,
        on_progress: Callable[[str, str], Any] | None = None,
    ):
        """Write the model in ``fmt`` (modeling.export.FORMATS; default folder: the run folder's ``fmt``) and
        verify it against the live model; returns the ExportResult. The live model is left as it was.
        ``on_progress(stage, line)`` hears each step as it begins."""
        from ..modeling import export as exports

        self._check_export(fmt)
        self.ensure_loaded()
        with self._lock:
            target = self.export_folder(fmt, path)
            model = self.model if self.model is not None else self.loaded.model
            tokenizer, base_model = self.loaded.tokenizer, self.loaded.name_or_path
        # Not under the lock, which the widgets' get_config and set_config wait on: while the files are
        # written and checked, whatever would change the model is refused instead (_refuse_while_exporting).
        own = self._exporting is None  # start_export marks its export before its thread starts
        if own:
            self._exporting = (fmt, target, threading.current_thread())
        try:
            result = exports.export(
                model, tokenizer, fmt, target, base_model=base_model, verify=verify, on_progress=on_progress
            )
        except exports.ExportError as error:
            raise SessionError(str(error), getattr(error, "path", None) or "format") from None
        finally:
            if own:
                self._exporting = None
        with self._lock:
            self.saved[fmt] = str(result.path)
        return result

    def start_export(
        self,
        fmt: str,
        path: str | None = None,
        *,
        on_progress: Callable[[str, str], Any] | None = None,
        on_done: Callable[[Any], Any] | None = None,
        on_error: Callable[[BaseException], Any] | None = None,
    ) -> Path:
        """``export`` in a background thread, so that the kernel keeps answering (the comm's export). What can be
        refused is refused here, before the thread starts; returns the folder it writes, absolute."""
        import importlib.util

        from ..modeling import export as exports

        self._check_export(fmt)
        if fmt == "gguf" and importlib.util.find_spec("gguf") is None:
            raise SessionError(
                "gguf: the gguf package is not installed; `pip install 'oss-finetune[export]'` (or `pip install gguf`)",
                "format",
            )
        target = self.export_folder(fmt, path).absolute()
        if target.exists() and not target.is_dir():
            raise SessionError(f"{target} is a file; name a folder", "folder")
        if target.is_dir() and any(target.iterdir()) and not (target / exports.MANIFEST).exists():
            raise SessionError(f"{target} holds files that are not an export of ours; name another folder", "folder")

        def tell(stage: str, line: str) -> None:
            if on_progress is not None:
                on_progress(stage, line)

        def run() -> None:
            try:
                # A model loaded on the way says so, like every automatic step.
                with reporting(lambda line: tell("preparing", line)):
                    result = self.export(fmt, str(target), on_progress=tell)
            except BaseException as error:  # noqa: BLE001 - the thread reports every failure to its caller
                self._exporting = None
                if on_error is not None:
                    on_error(error)
                return
            self._exporting = None
            if on_done is not None:
                on_done(result)

        thread = threading.Thread(target=run, name="oss-finetune-export", daemon=True)
        self._export_thread = thread
        self._exporting = (fmt, target, thread)
        thread.start()
        return target

    def wait_export(self, timeout: float | None = None) -> bool:
        """Wait for a background export; True when none is left running."""
        return _joined(self._export_thread, timeout)

    def is_exporting(self) -> bool:
        return self._exporting is not None

    def _refuse_while_exporting(self, what: str) -> None:
        exporting = self._exporting
        # The export's own thread loads the model and checks the files; only the others wait.
        if exporting is not None and threading.current_thread() is not exporting[2]:
            fmt, folder, _ = exporting
            raise SessionError(
                f"cannot {what} while the {fmt} export to {folder} is being written and checked (it uses the model); "
                "try again once the panel says it is done"
            )


# -- helpers shared with the front ends ---------------------------------------------------------

_COMMAND_OF = {"model": "load", "data": "data", "lora": "lora", "training": "train"}


def suggestion_command(changes: dict) -> str:
    """The magic lines that make a suggested change, e.g. `%oss_finetune train --gradient-checkpointing`."""
    lines = []
    for section, values in changes.items():
        flags = []
        for key, value in values.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                flags.append(flag)
            elif value is False:
                flags.append("--no-" + key.replace("_", "-"))
            else:
                flags.append(f"{flag} {value}")
        lines.append(f"`%oss_finetune {_COMMAND_OF[section]} {' '.join(flags)}`")
    return " then ".join(lines)


def memory_refusal(plan, what: str) -> str:
    """One line: why ``what`` is refused, the change that fits and how to make it, and how to go on anyway."""
    line = f"{what} refused: {plan.verdict()}"
    if plan.suggestion is not None:
        line += f" — run {suggestion_command(plan.suggestion.changes)}"
    return line + "; or add --force to try anyway."


def _joined(thread: threading.Thread | None, timeout: float | None) -> bool:
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _gpu_index(device) -> int | None:
    """Which of this process's GPUs ``device`` is; None for the CPU."""
    if getattr(device, "type", "cpu") != "cuda":
        return None
    if device.index is not None:
        return int(device.index)
    import torch

    return int(torch.cuda.current_device())


def pad_id(tokenizer) -> int:
    from ..modeling.model import PAD_TOKEN_ID

    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if isinstance(pad, int) else PAD_TOKEN_ID


def prepared_source(session: Session) -> str:
    summary = getattr(session.prepared, "summary", None) or {}
    return summary.get("source") or session.config["data"]["source"]


def chat_conversation(message: str, effort: str, language: str | None, tools: list[dict] | None = None):
    """A one-turn conversation: the reasoning effort goes to the system message, the language to the
    instructions, the tools to the developer message."""
    from ..core.harmony import Conversation, Message

    return Conversation(
        [Message("user", message)], reasoning_effort=effort, reasoning_language=language, tools=tools or None
    )


def harmony_reply(tokenizer, prompt, new_ids: list[int], title: str = "chat") -> dict:
    """Label generated tokens with their channels; a malformed stream is reported, not raised (toy models babble).

    Returns the analysis and final text, the raw text, the parse error if any, and a harmony-tokens
    payload of the prompt followed by the answer.
    """
    from ..core import harmony

    parser = harmony.StreamParser(tokenizer, role="assistant")
    error = None
    for token in new_ids:
        try:
            parser.feed(token)
        except harmony.HarmonyParseError as exc:
            error = str(exc)
            break
    messages = list(parser.messages)
    if error is None:
        try:
            messages = parser.finish(partial=True)
        except harmony.HarmonyParseError as exc:  # pragma: no cover - partial=True accepts an open message
            error = str(exc)
    analysis = "".join(m.content for m in messages if m.channel == "analysis")
    final = "".join(m.content for m in messages if m.channel == "final")
    calls = [f"{m.recipient} {m.content}" for m in messages if m.role == "assistant" and m.recipient]

    item = prompt.to_payload(title=title)
    tokens = item["tokens"]
    offset = len(item["messages"])
    labels = list(parser.labels)
    texts = harmony.token_texts(new_ids, tokenizer)
    for i, token in enumerate(new_ids):
        label = labels[i] if i < len(labels) else None
        tokens["ids"].append(int(token))
        tokens["text"].append(texts[i])
        tokens["message"].append(offset + label.message if label else -1)
        tokens["role"].append(label.role if label else "assistant")
        tokens["channel"].append(label.channel if label else "none")
        tokens["part"].append(label.part if label else "content")
        tokens["trained"].append(False)
    for index, message in enumerate(messages):
        item["messages"].append({"index": offset + index, "role": message.role, "channel": message.channel or "none"})
    # An open (unfinished) message still needs an entry for its tokens to point at.
    used = {m for m in tokens["message"] if m >= 0}
    for index in sorted(used - {m["index"] for m in item["messages"]}):
        item["messages"].append({"index": index, "role": "assistant", "channel": "none"})
    # Nothing generated is a training target: the view opens with the loss mask off.
    item["origin"] = "generation"
    payload = schema.validate("harmony-tokens", {"version": 1, "title": title, "conversations": [item]})
    return {
        "analysis": analysis,
        "final": final,
        "calls": calls,
        "text": tokenizer.decode(new_ids),
        "token_ids": list(new_ids),
        "error": error,
        "payload": payload,
    }


_SESSION: Session | None = None
_SESSION_LOCK = threading.Lock()

# Who follows every run of this kernel, whoever started it (a magic, a widget, code): the widgets'
# comm channels. Kept outside the session so that reset_session does not drop them.
_WATCHERS: list[Callable[[dict], Any]] = []
_WATCHERS_LOCK = threading.Lock()


def watch_runs(watcher: Callable[[dict], Any]) -> Callable[[], None]:
    """Call ``watcher(payload)`` on every update of every run from now on; returns the function that stops it."""
    with _WATCHERS_LOCK:
        _WATCHERS.append(watcher)

    def unwatch() -> None:
        with _WATCHERS_LOCK:
            if watcher in _WATCHERS:
                _WATCHERS.remove(watcher)

    return unwatch


def _tell_watchers(payload: dict) -> None:
    with _WATCHERS_LOCK:
        watchers = list(_WATCHERS)
    for watcher in watchers:
        try:
            watcher(payload)
        except Exception:  # noqa: BLE001 - a broken follower must not stop the run
            pass


def get_session() -> Session:
    """The kernel's one session, created on first use."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is None:
            _SESSION = Session()
        return _SESSION


def reset_session(config: dict | None = None) -> Session:
    """A fresh session (tests, and a person who wants to start over without restarting the kernel)."""
    global _SESSION
    with _SESSION_LOCK:
        if _SESSION is not None:
            _SESSION.stop("session reset")
        _SESSION = Session(config)
        return _SESSION
