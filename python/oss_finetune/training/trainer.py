"""Supervised fine-tuning of a LoRA adapter on the trained (loss-mask) tokens.

Our own loop on torch + peft + transformers' schedulers rather than trl's SFTTrainer; docs/training.md
says why. In short: the output layer runs only where the loss mask is on, the loss is exactly the
token-weighted mean over a whole accumulated optimizer step, and interrupt / checkpoint / resume are
ours to get right.

Public surface:

- ``Trainer(model, examples, training_config, ...)``, ``trainer.on_step(fn)``, ``trainer.on_status(fn)``,
  ``trainer.train(resume_from=None)``, ``trainer.stop()``, ``trainer.snapshot()``;

Saving, loading and merging the adapter live in ``modeling.adapter``, generation and token scores in
``training.generation``; their names are also importable from here (``oss_finetune.train``'s old
surface), for one release.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import gc
import json
import math
import os
import pickle
import random
import secrets
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..core.config import ConfigBase, section_dict
from ..core.data import Example
from ..core.errors import UserError
from ..modeling import auto
from ..modeling.adapter import adapter_enabled, load_adapter, merge_adapter, save_adapter  # noqa: F401
from ..modeling.model import PAD_TOKEN_ID, model_device, unwrap
from .distributed import TeamError
from .generation import TokenScores, generate, token_logprobs  # noqa: F401

STATUSES = ("pending", "running", "stopping", "stopped", "completed", "failed")


# The trainer's input is the data module's Example; the old name stays for code that used it.
TrainingExample = Example


@dataclass
class StepMetrics:
    """One logged optimizer step; the StepMetrics shape of schema/training-run.schema.json."""

    step: int
    loss: float
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    gpu_memory_gib: float | None = None
    epoch: float | None = None
    elapsed_seconds: float | None = None
    goal: dict | None = None  # the GoalMeasure of a step at which training.watch_every watched the goal

    def to_dict(self) -> dict:
        row = asdict(self)
        if row["goal"] is None:
            del row["goal"]  # only the watched steps carry one
        return row


@dataclass
class RunEvent:
    """A change of a run's status, sent to ``on_status`` subscribers."""

    status: str
    run_id: str
    run_dir: str | None
    step: int
    max_steps: int
    message: str | None = None
    checkpoint: str | None = None


@dataclass
class TrainResult:
    status: str
    step: int
    max_steps: int
    run_dir: str
    checkpoint: str | None
    message: str | None
    metrics: list[StepMetrics] = field(default_factory=list)


class TrainingError(UserError, RuntimeError):
    """Training failed in a way the person can fix; the message says how."""


def training_settings(training_config: ConfigBase | dict | None = None) -> dict:
    """The ``training`` section with every default filled in, validated against the schema."""
    return section_dict("training", training_config)


def _as_example(example: Example | dict) -> Example:
    """An Example as is; a dict with input_ids and trained (the form a test or a JSON file has) made one."""
    if isinstance(example, Example):
        return example
    return Example(list(example["input_ids"]), [bool(t) for t in example["trained"]])


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    # Directory fsync makes a rename durable on POSIX; Windows cannot open folders, and needs none.
    with contextlib.suppress(OSError, PermissionError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _now(timespec: str = "seconds") -> str:
    return datetime.now(timezone.utc).isoformat(timespec=timespec)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    with contextlib.suppress(ImportError):
        import numpy as np

        name, keys, position, has_gauss, cached = np.random.get_state()
        # Plain numbers rather than an ndarray, so that the file loads with torch.load(weights_only=True).
        state["numpy"] = (name, [int(k) for k in keys], int(position), int(has_gauss), float(cached))
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        with contextlib.suppress(ImportError):
            import numpy as np

            np.random.set_state(state["numpy"])


def _load_state(path: Path) -> Any:
    """A checkpoint's optimizer, scheduler or RNG state: tensors and plain data only. torch.load with
    weights_only never runs code from the file, so a checkpoint folder someone shares cannot either."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise TrainingError(
            f"{path} is refused: it holds objects other than tensors and plain data, which loading would have "
            f"to run as code ({first}). Resume only from checkpoints this package wrote."
        ) from None


def _metric_lines(path: Path) -> list[str]:
    """The whole lines of metrics.jsonl; a line cut short by a crash mid-write is left out."""
    lines = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            lines.append(line)
    return lines


def _checkpointing(model, on: bool) -> None:
    """Switch activation checkpointing on or off, by the names transformers 5 has for it (the old
    gradient_checkpointing_* ones warn that they go away in v6), or the old ones where they are all there is."""
    if on:
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif hasattr(model, "activation_checkpointing_disable"):
        model.activation_checkpointing_disable()
    else:
        model.gradient_checkpointing_disable()


def _is_cuda_failure(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    accelerator_error = getattr(torch, "AcceleratorError", None)
    if accelerator_error is not None and isinstance(error, accelerator_error):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("CUDA" in text or "cuBLAS" in text or "CUBLAS" in text)


def _failure_message(error: BaseException, step: int, lora_targets: Sequence[str] | None) -> str:
    oom = isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()
    what = "ran out of GPU memory" if oom else f"hit a CUDA error ({type(error).__name__})"
    targets = ", ".join(lora_targets) if lora_targets else "the current target modules"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"Training {what} at step {step + 1}: {first_line}\n"
        "Gradients and optimizer state were freed; the model is still loaded and usable. To make it fit:\n"
        "  - a shorter data.max_seq_length (activation memory grows with it);\n"
        "  - model.load_in_4bit: true (4-bit base weights, needs bitsandbytes);\n"
        f"  - fewer LoRA target modules (now {targets}), or target_experts: false;\n"
        "  - a smaller training.batch_size with more gradient_accumulation_steps (same effective batch);\n"
        "  - training.gradient_checkpointing: true, if it is off."
    )


class Trainer:
    """Trains the adapter of ``model`` on ``examples`` with the ``training`` section of a fine-tune config.

    ``model`` is usually the peft model from ``apply_lora``; whatever has ``requires_grad`` is trained.
    Subscribe with ``on_step(fn)`` (fn receives StepMetrics) and ``on_status(fn)`` (fn receives a RunEvent);
    ``snapshot()`` gives the whole state as an application/vnd.oss-finetune.training+json payload.
    """

    def __init__(
        self,
        model,
        examples: Iterable[Any],
        training_config: ConfigBase | dict | None = None,
        *,
        run_config: dict | None = None,
        run_id: str | None = None,
        pad_token_id: int = PAD_TOKEN_ID,
        max_grad_norm: float | None = 1.0,
        handle_sigint: bool = True,
        team=None,
        checkpoints: bool = True,
    ):
        self.model = model
        self.team = team  # distributed.RanksTeam when torchrun started several ranks, else None
        self.examples = [_as_example(e) for e in examples]
        if not self.examples:
            raise TrainingError("there is nothing to train on: the data set has no examples")
        self.settings = training_settings(training_config)
        self.run_config = copy.deepcopy(run_config) if run_config is not None else {"training": self.settings}
        self.pad_token_id = pad_token_id
        self.max_grad_norm = max_grad_norm
        self.handle_sigint = handle_sigint
        # False for a run whose result is the model itself (the embedded base's build), not a checkpoint.
        self.writes_checkpoints = checkpoints
        self.run_id = run_id or f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        self.run_dir = Path(self.settings["output_dir"]) / self.run_id

        s = self.settings
        self.samples_per_step = s["batch_size"] * s["gradient_accumulation_steps"]
        if s["max_steps"] is not None:
            self.max_steps = int(s["max_steps"])
        else:
            self.max_steps = max(1, math.ceil(s["epochs"] * len(self.examples) / self.samples_per_step))

        self.status = "pending"
        self.engine: str | None = None  # chosen when train() starts: "fast" or "transformers"
        self.step = 0
        self.cursor = 0  # samples consumed, over all epochs: the data-order position
        self.metrics: list[StepMetrics] = []
        self.message: str | None = None
        self.checkpoint: str | None = None
        self.started_at: str | None = None
        self._elapsed_before = 0.0  # from earlier sessions of a resumed run
        self._t0: float | None = None
        self._step_subscribers: list[Callable[[StepMetrics], Any]] = []
        self._status_subscribers: list[Callable[[RunEvent], Any]] = []
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._optimizer: Any = None  # torch's AdamW or bitsandbytes' AdamW8bit, made in train()
        self._scheduler: Any = None
        self._boundary_rng: dict | None = None
        self._orders: dict[int, list[int]] = {}
        self._window: list[tuple[float, int]] = []  # (loss sum, trained tokens) since the last log
        self._team_stop = False  # with a team: the stop every rank agreed on at the last step
        self._team_memory: float | None = None  # with a team: the largest peak over its GPUs
        self._sharded: Any = None  # sharding.Sharded when training.sharding chose fsdp for this run
        self.sharding_line = ""  # what training.sharding chose, in one line ("" when nothing to say)
        from .reporting import attach

        attach(self)  # training.report_to: the experiment trackers that also get every step

    # -- subscriptions ---------------------------------------------------------------------------
    def on_step(self, fn: Callable[[StepMetrics], Any]) -> Callable[[StepMetrics], Any]:
        """Call ``fn(metrics)`` after each logged step. Usable as a decorator."""
        self._step_subscribers.append(fn)
        return fn

    def on_status(self, fn: Callable[[RunEvent], Any]) -> Callable[[RunEvent], Any]:
        """Call ``fn(event)`` whenever the status changes (pending -> running -> completed/stopped/failed)."""
        self._status_subscribers.append(fn)
        return fn

    @property
    def stop_requested(self) -> bool:
        """Whether a stop was asked for and not yet acted on."""
        return self._stop.is_set()

    def withdraw_stop(self, message: str) -> None:
        """The run ended before its first step because of a stop (its team never formed): clear the
        request and report it stopped."""
        self._stop.clear()
        self.set_status("stopped", message)

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the run to stop at the next step boundary and write a checkpoint. Safe from any thread."""
        self._stop_reason = reason
        self._stop.set()
        if self.status == "running":
            self.set_status("stopping", f"{reason}; stopping after the current step")

    # -- state for the display -------------------------------------------------------------------
    @property
    def elapsed_seconds(self) -> float:
        running = time.perf_counter() - self._t0 if self._t0 is not None else 0.0
        return self._elapsed_before + running

    def snapshot(self) -> dict:
        """The run as an application/vnd.oss-finetune.training+json payload (schema training-run)."""
        eta = None
        done_now = self.step - self._first_step if hasattr(self, "_first_step") else 0
        if self.status in ("running", "stopping") and done_now > 0 and self._t0 is not None:
            per_step = (time.perf_counter() - self._t0) / done_now
            eta = per_step * (self.max_steps - self.step)
        from ..modeling.model import trainable_parameters

        return {
            "version": 1,
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "status": self.status,
            "step": self.step,
            "max_steps": self.max_steps,
            "started_at": self.started_at,
            "updated_at": _now(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "eta_seconds": None if eta is None else round(max(eta, 0.0), 3),
            "message": self.message,
            "checkpoint": self.checkpoint,
            "device": self._device_words(),
            "trainable_parameters": trainable_parameters(self.model),
            "config": self.run_config,
            "metrics": [m.to_dict() for m in self.metrics],
        }

    def _device_words(self) -> str:
        device = str(model_device(self.model))
        if self.team is None:
            return device
        more = self.team.world - 1
        one, many = ("GPU", "GPUs") if device.startswith("cuda") else ("CPU process", "CPU processes")
        return f"{device} + {more} more {one if more == 1 else many}, data parallel"

    def set_status(self, status: str, message: str | None = None) -> None:
        """Report a status (one of STATUSES) to the on_status subscribers; also what a caller that
        prepares the run uses to say where it stands (the session while a team of GPUs starts)."""
        assert status in STATUSES, status
        self.status = status
        if message is not None:
            self.message = message
        event = RunEvent(
            status, self.run_id, str(self.run_dir), self.step, self.max_steps, self.message, self.checkpoint
        )
        for fn in list(self._status_subscribers):
            fn(event)

    # -- data order ------------------------------------------------------------------------------
    def _order(self, epoch: int) -> list[int]:
        # Each epoch's shuffle comes from (seed, epoch) alone, so a resumed run needs only the cursor.
        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.settings["seed"] * 1_000_003 + epoch)
            self._orders[epoch] = torch.randperm(len(self.examples), generator=generator).tolist()
        return self._orders[epoch]

    def _take(self, cursor: int, count: int) -> list[TrainingExample]:
        n = len(self.examples)
        return [self.examples[self._order((cursor + i) // n)[(cursor + i) % n]] for i in range(count)]

    def _collate(self, batch: list[TrainingExample], device: torch.device):
        width = max(len(e.input_ids) for e in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        trained = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, example in enumerate(batch):
            length = len(example.input_ids)
            ids[row, :length] = torch.tensor(example.input_ids, dtype=torch.long)
            attention[row, :length] = 1
            trained[row, :length] = torch.tensor(example.trained, dtype=torch.bool)
        # Token i is predicted from position i - 1, so the first token of a row is never a target.
        trained[:, 0] = False
        return ids.to(device), attention.to(device), trained.to(device)

    # -- optimisation ----------------------------------------------------------------------------
    def _trainable(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]

    def _make_optimizer(self):
        s = self.settings
        params = self._trainable()
        if not params:
            raise TrainingError("the model has no trainable parameters; apply a LoRA adapter first (apply_lora)")
        decay = [p for n, p in params if p.ndim >= 2 and not n.endswith("bias")]
        no_decay = [p for n, p in params if not (p.ndim >= 2 and not n.endswith("bias"))]
        groups = [{"params": decay, "weight_decay": s["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
        name = s["optimizer"]
        on_cuda = model_device(self.model).type == "cuda"
        bnb: Any = None
        if name in ("auto", "adamw_8bit") and on_cuda:
            try:
                import bitsandbytes as bnb  # type: ignore[no-redef]
            except Exception:  # noqa: BLE001 - a broken install counts as missing
                bnb = None
        if name == "adamw_8bit" and bnb is None:
            raise TrainingError(
                "optimizer adamw_8bit needs bitsandbytes and a CUDA GPU"
                + ("" if on_cuda else " (this model is on the CPU)")
                + "; use optimizer 'auto' or 'adamw_torch'."
            )
        if auto.optimizer(name, on_gpu=on_cuda, bitsandbytes=bnb is not None) == "adamw_8bit":
            self.optimizer_name = "adamw_8bit"
            return bnb.optim.AdamW8bit(groups, lr=s["learning_rate"])
        self.optimizer_name = "adamw_torch"
        return torch.optim.AdamW(groups, lr=s["learning_rate"], fused=on_cuda or None)

    def _make_scheduler(self, optimizer):
        from transformers import get_scheduler

        s = self.settings
        name = s["lr_scheduler"]
        if name == "constant":
            name = "constant_with_warmup"
        return get_scheduler(name, optimizer, num_warmup_steps=s["warmup_steps"], num_training_steps=self.max_steps)

    def _masked_loss_sum(self, ids, attention, trained) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy over the trained tokens, with the output layer run only at those positions."""
        inner = unwrap(self.model)
        hidden = inner.model(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
        targets_mask = trained[:, 1:]
        selected = hidden[:, :-1][targets_mask]
        targets = ids[:, 1:][targets_mask]
        count = int(targets.numel())
        if count == 0:
            # Keep the graph connected so that backward() is harmless for a step without targets.
            return hidden.sum() * 0.0, 0
        logits = inner.lm_head(selected).float()
        return F.cross_entropy(logits, targets, reduction="sum"), count

    def _choose_engine(self, device: torch.device) -> str:
        from ..modeling import engine

        wanted = self.settings.get("engine", "auto")
        if wanted == "fast" and not engine.supports(self.model):
            raise TrainingError("engine 'fast' runs GPT-OSS models only; use engine 'transformers' for this model")
        return auto.engine(wanted, on_gpu=device.type == "cuda", supported=engine.supports(self.model))

    @property
    def pack_tokens(self) -> int:
        from ..modeling import engine

        return auto.pack_tokens(
            self.settings.get("pack_tokens"),
            gradient_checkpointing=self.settings["gradient_checkpointing"],
            expert_lora=engine.has_expert_lora(self.model),
        )

    def _engine_words(self) -> str:
        if self.engine == "fast":
            words = f"fast engine, packed micro-batches of up to {self.pack_tokens:,} tokens"
            if model_device(self.model).type == "cuda" and self.step == 0:
                words += "; the first step also compiles the fused GPU kernels, about a minute"
        else:
            words = "transformers engine, padded micro-batches"
        if self._sharded is not None:
            words += f"; {self._sharded.words()}, each rank with its share of every step"
        elif self.team is not None:
            words += f"; {self._device_words()}, each replica with its share of every step"
        if self.sharding_line:
            words += f"; {self.sharding_line}"
        return words

    def _micro_batches(self, samples: list[TrainingExample], device: torch.device, *, split: bool = True) -> list:
        """This process's micro-batches of the step's samples, each a (loss function, trained tokens,
        input tokens) triple. With a team, this rank's share of them only."""
        s = self.settings
        if self.team is not None and split:
            from .distributed import split_for_ranks

            shares = split_for_ranks(samples, self.team.world)
            samples = shares[self.team.rank]
            if self._sharded is not None:
                return self._padded_passes(shares, device)
        if getattr(self, "engine", "transformers") == "fast":
            from ..modeling import engine

            checkpointing = s["gradient_checkpointing"]

            def loss_of(batch: Any) -> Callable[[], torch.Tensor]:
                moved = batch.to(device)  # each batch is moved once, when its closure is made
                return lambda: engine.loss_sum(self.model, moved, gradient_checkpointing=checkpointing)[0]

            return [(loss_of(batch), batch.trained, batch.tokens) for batch in engine.pack(samples, self.pack_tokens)]
        size = s["batch_size"]
        micro = [samples[i : i + size] for i in range(0, len(samples), size)]
        result = []
        for ids, attention, trained in (self._collate(b, device) for b in micro):
            result.append(
                (
                    (lambda i=ids, a=attention, t=trained: self._masked_loss_sum(i, a, t)[0]),
                    int(trained[:, 1:].sum()),
                    int(attention.sum()),
                )
            )
        return result

    def _one_step(self) -> tuple[float, float | None, int, int, float]:
        """One optimizer step over the step's micro-batches (padded, or packed by the fast engine).

        Returns the summed loss, the grad norm, the trained and input token counts, and the learning rate.
        """
        device = model_device(self.model)
        samples = self._take(self.cursor, self.samples_per_step)
        batches = self._micro_batches(samples, device)
        # The loss is the mean over every trained token of the whole optimizer step, so each micro-batch's
        # summed loss is divided by the step's total, known before the first backward (with a team, every
        # rank counts the whole step's, so all of them divide by the same number).
        if self.team is None:
            total_trained = sum(trained for _, trained, _ in batches)
        else:
            from .distributed import targets_in

            total_trained = sum(targets_in(e) for e in samples)
        total_tokens = sum(tokens for _, _, tokens in batches)
        denominator = max(total_trained, 1)
        loss_sum = 0.0
        for compute_loss, _, _ in batches:
            loss = compute_loss() if self._sharded is None else self._sharded.micro_batch(compute_loss)
            (loss / denominator).backward()
            loss_sum += float(loss.detach())
        params = [p for _, p in self._trainable()]
        if self.team is not None:
            # FSDP has already reduce-scattered the gradients: only the loss, tokens and stop are summed.
            summed = [] if self._sharded is not None else params
            loss_sum, total_tokens = self._sum_over_team(summed, loss_sum, total_tokens, device)
        if self._sharded is not None:
            grad_norm = self._sharded.clip(params, self.max_grad_norm)
        elif self.max_grad_norm is not None:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm))
        else:
            grad_norm = float(
                torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params if p.grad is not None]))
            )
        lr = float(self._optimizer.param_groups[0]["lr"])  # the rate this step used, not the next one's
        if not (math.isfinite(loss_sum) and math.isfinite(grad_norm)):
            # Stepping would write NaN into the adapter: the run stops with it as the last step left it.
            self._optimizer.zero_grad(set_to_none=True)
            what = f"loss {loss_sum}" if not math.isfinite(loss_sum) else f"gradient norm {grad_norm}"
            raise TrainingError(
                f"training stopped at step {self.step + 1}: the {what} is not a finite number (learning rate {lr:g}); "
                "the adapter is as step "
                f"{self.step} left it. Lower the learning rate, or look for a broken row in the data"
            )
        self._optimizer.step()
        self._scheduler.step()
        self._optimizer.zero_grad(set_to_none=True)
        return loss_sum, grad_norm, total_trained, total_tokens, lr

    # -- a team of GPUs ------------------------------------------------------------------------------
    def _sum_over_team(self, params, loss_sum: float, tokens: int, device: torch.device) -> tuple[float, int]:
        """Sum the adapter's gradients, the loss and the tokens over the team, agree on stopping and on
        the peak memory, all in one buffer:
        [gradients..., loss, tokens, stop, peak of rank 0..N-1, has-gradient of each parameter...]."""
        team = self.team
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.detach().reshape(-1).float().cpu() for g in grads]) if grads else torch.zeros(0)
        tail = torch.zeros(3 + team.world + len(params), dtype=torch.float64)
        tail[0] = loss_sum
        tail[1] = tokens
        tail[2] = 1.0 if (team.is_leader and self._stop.is_set()) else 0.0
        if device.type == "cuda":
            tail[3 + team.rank] = torch.cuda.max_memory_allocated(device) / 2**30
        # A parameter no rank touched (an expert no token was routed to) keeps no gradient, as in one
        # process, so that the optimizer skips it instead of decaying it.
        tail[3 + team.world :] = torch.tensor([p.grad is not None for p in params], dtype=torch.float64)
        buffer = torch.cat([flat.double(), tail])
        team.sum_(buffer)
        offset = 0
        used = buffer[flat.numel() + 3 + team.world :]
        for param, grad, touched in zip(params, grads, used.tolist()):
            n = grad.numel()
            summed = buffer[offset : offset + n].view_as(grad).to(dtype=grad.dtype, device=grad.device)
            param.grad = summed if touched > 0 else None
            offset += n
        loss_sum, tokens, stop = float(buffer[offset]), int(buffer[offset + 1]), bool(buffer[offset + 2] > 0)
        if stop:
            self._team_stop = True
            if not team.is_leader:
                self._stop_reason = "stopped from the notebook"
        if device.type == "cuda":
            self._team_memory = round(float(buffer[offset + 3 : offset + 3 + team.world].max()), 3)
        return loss_sum, tokens

    # -- the base sharded over the ranks (training.sharding) -----------------------------------------
    def _shard(self, resume_from: str | os.PathLike | None, device: torch.device) -> None:
        """Shard the model with FSDP2 when training.sharding chooses it, with the adapter it starts
        from already in place: rank 0's, or the checkpoint's (whole tensors load only before sharding)."""
        from . import sharding
        from .distributed import RanksTeam

        if self._sharded is not None:
            return  # sharded already: as it loaded (use_shards), or for an earlier run of this trainer
        torchrun = isinstance(self.team, RanksTeam)
        chosen, self.sharding_line = sharding.choose(
            self.settings.get("sharding", "replicate"),
            ranks=self.team.world if self.team is not None else 1,
            torchrun=torchrun,
            replica_fits=lambda: sharding.replica_fits(self.model, self.run_config, self.team.device),
        )
        if chosen != "fsdp" or self._sharded is not None:
            return
        if resume_from is not None:
            self._load_adapter_weights(Path(resume_from))
        self._share_adapter_from_leader()
        self._sharded = sharding.Sharded(self.model, self.team.device)

    def use_shards(self, sharded, line: str) -> None:
        """Train a model that was sharded as it loaded (sharding.load_shares), its adapter already in
        every rank's slices: nothing is sharded or shared again."""
        self._sharded, self.sharding_line = sharded, line

    def _load_adapter_weights(self, path: Path) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        weights = load_file(str(path / "adapter_model.safetensors"), device=str(model_device(self.model)))
        result = set_peft_model_state_dict(self.model, weights)
        unexpected = getattr(result, "unexpected_keys", None)
        if unexpected:
            raise TrainingError(f"the checkpoint's adapter does not fit this model: unexpected {unexpected[:3]}")

    def _padded_passes(self, shares: list[list[TrainingExample]], device: torch.device) -> list:
        """This rank's micro-batches, and passes that weigh nothing up to the most any rank makes: FSDP
        gathers every layer with all ranks at once, so all of them make the same passes."""
        from .sharding import idle_example

        own = self._micro_batches(shares[self.team.rank], device, split=False)
        most = max(self._passes_in(share) for share in shares)
        if len(own) >= most:
            return own
        idle = self._micro_batches([idle_example(self.pad_token_id)], device, split=False)[0]
        return own + [(idle[0], 0, 0)] * (most - len(own))

    def _passes_in(self, share: list[TrainingExample]) -> int:
        if not share:
            return 0
        if getattr(self, "engine", "transformers") == "fast":
            from ..modeling import engine

            return len(engine.pack(share, self.pack_tokens))
        return math.ceil(len(share) / self.settings["batch_size"])

    def _gather_sharded_state(self) -> tuple[dict, dict | None] | None:
        """With a sharded model: the whole adapter and optimizer state, gathered on every rank together
        (rank 0 keeps them); else None."""
        if self._sharded is None:
            return None
        leader = self._writes_files
        adapter = self._sharded.adapter_state(leader)
        optimizer = self._sharded.optimizer_state(self._optimizer, leader)
        return adapter, optimizer

    def _share_adapter_from_leader(self) -> None:
        """Every replica starts from rank 0's adapter (fresh, resumed or trained before in the notebook)."""
        params = [p for _, p in self._trainable()]
        flat = torch.cat([p.detach().reshape(-1).double().cpu() for p in params])
        self.team.share_from_leader_(flat)
        offset = 0
        with torch.no_grad():
            for param in params:
                n = param.numel()
                param.copy_(flat[offset : offset + n].view_as(param))
                offset += n

    def _stop_agreed(self) -> bool:
        # With a team the notebook's stop counts only once every rank has heard it, at a step's sum,
        # so that no replica waits for a step the others will not take.
        return self._team_stop if self.team is not None else self._stop.is_set()

    @property
    def _writes_files(self) -> bool:
        return self.team is None or self.team.is_leader

    # -- checkpoints -----------------------------------------------------------------------------
    def _write_run_files(self) -> None:
        if not self._writes_files:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "checkpoints").mkdir(exist_ok=True)
        config_path = self.run_dir / "config.json"
        tmp = config_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"run_id": self.run_id, "config": self.run_config}, indent=2), encoding="utf-8")
        os.replace(tmp, config_path)

    def _append_metrics(self, metrics: StepMetrics) -> None:
        if not self._writes_files:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics.to_dict()) + "\n")
            handle.flush()

    def save_checkpoint(self) -> str:
        """Write checkpoints/step-N atomically: into a temporary folder, fsynced, then renamed.
        With a team only rank 0 writes; the others return the path it writes. A trainer made with
        ``checkpoints=False`` writes none and returns None."""
        if not self.writes_checkpoints:
            return None  # type: ignore[return-value]
        gathered = self._gather_sharded_state()
        if not self._writes_files:
            self.checkpoint = str(self.run_dir / "checkpoints" / f"step-{self.step}")
            return self.checkpoint
        checkpoints = self.run_dir / "checkpoints"
        checkpoints.mkdir(parents=True, exist_ok=True)
        final = checkpoints / f"step-{self.step}"
        tmp = checkpoints / f".tmp-step-{self.step}-{secrets.token_hex(3)}"
        tmp.mkdir()
        try:
            if gathered is None:
                save_adapter(self.model, tmp)
                torch.save(self._optimizer.state_dict(), tmp / "optimizer.pt")
            else:
                from .sharding import save_adapter as save_whole_adapter

                save_whole_adapter(self.model, tmp, gathered[0])
                torch.save(gathered[1], tmp / "optimizer.pt")
            torch.save(self._scheduler.state_dict(), tmp / "scheduler.pt")
            torch.save(self._boundary_rng if self._boundary_rng is not None else _rng_state(), tmp / "rng_state.pt")
            state = {
                "step": self.step,
                "max_steps": self.max_steps,
                "cursor": self.cursor,
                "epoch": self.cursor / len(self.examples),
                "num_examples": len(self.examples),
                "elapsed_seconds": self.elapsed_seconds,
                "started_at": self.started_at,
                "run_id": self.run_id,
                "optimizer": getattr(self, "optimizer_name", None),
                "settings": self.settings,
            }
            (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2), encoding="utf-8")
            _fsync_tree(tmp)
            if final.exists():
                # A re-run of the same step (after a resume) replaces the older copy; the rename
                # below is the moment the new one becomes visible.
                stale = checkpoints / f".old-step-{self.step}-{secrets.token_hex(3)}"
                os.replace(final, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.replace(tmp, final)
            _fsync_dir(checkpoints)
        except BaseException as error:
            shutil.rmtree(tmp, ignore_errors=True)
            full = self._full_disk(error, checkpoints)
            if full:
                raise TrainingError(full) from error
            raise
        self.checkpoint = str(final)
        return self.checkpoint

    def _full_disk(self, error: BaseException, folder: Path) -> str | None:
        """The words for a checkpoint that did not fit on its disk, or None for any other failure. torch
        reports a full disk from its archive writer as "unexpected pos", which names neither cause nor place."""
        needed = 3 * sum(p.numel() * 4 for _, p in self._trainable())  # the adapter and AdamW's two moments
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return None
        no_space = isinstance(error, OSError) and error.errno == errno.ENOSPC
        if not (no_space or (isinstance(error, RuntimeError) and free < needed)):
            return None
        return (
            f"no space left on device at {folder}: a checkpoint needs about {needed:,} bytes and {free:,} are free; "
            "free some space (old runs under output_dir) and resume with `--resume latest`"
        )

    def _load_checkpoint(self, path: Path) -> None:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if state["num_examples"] != len(self.examples):
            raise TrainingError(
                f"the checkpoint {path} was trained on {state['num_examples']} examples, this data set has "
                f"{len(self.examples)}; resume with the same data"
            )
        if self._sharded is None:
            self._load_adapter_weights(path)
            self._optimizer.load_state_dict(_load_state(path / "optimizer.pt"))
        else:
            # The adapter was put in before sharding (_shard); the moments are cut to this rank's shards.
            self._sharded.load_optimizer_state(self._optimizer, _load_state(path / "optimizer.pt"))
        self._scheduler.load_state_dict(_load_state(path / "scheduler.pt"))
        self._boundary_rng = _load_state(path / "rng_state.pt")
        _set_rng_state(self._boundary_rng)
        self.step = state["step"]
        self.cursor = state["cursor"]
        self._elapsed_before = state.get("elapsed_seconds", 0.0)
        self.started_at = state.get("started_at") or self.started_at
        self.checkpoint = str(path)
        # The history after the checkpoint belongs to the abandoned branch of the run.
        metrics_path = self.run_dir / "metrics.jsonl"
        if metrics_path.exists() and self._writes_files:
            kept = [line for line in _metric_lines(metrics_path) if json.loads(line)["step"] <= self.step]
            tmp = metrics_path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, metrics_path)
            self.metrics = [StepMetrics(**json.loads(line)) for line in kept]

    # -- the loop --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _sigint_stops(self):
        """While training, a first Ctrl-C / kernel interrupt asks for a graceful stop; a second one aborts."""
        if not self.handle_sigint or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):
            if self._stop.is_set():
                raise KeyboardInterrupt
            self.stop("interrupted")

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main interpreter
            yield
            return
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def continue_run_of(self, checkpoint: str | os.PathLike) -> None:
        """Take the id and folder of the run a checkpoints/step-N folder belongs to."""
        path = Path(checkpoint)
        if not (path / "trainer_state.json").is_file():
            raise TrainingError(f"{path} is not a checkpoint folder (no trainer_state.json)")
        self.run_dir = path.parent.parent
        self.run_id = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))["run_id"]

    def _prepare(self, resume_from: str | os.PathLike | None, device: torch.device) -> None:
        """Everything before the first step: seeds, engine, optimizer, scheduler, run files, checkpoint."""
        s = self.settings
        if resume_from is None:
            # Dropout draws from the global stream; a resumed run restores it from the checkpoint instead.
            torch.manual_seed(s["seed"])
            random.seed(s["seed"])
        self._shard(resume_from, device)
        device = model_device(self.model)  # where the shards went, for the engine's choice
        self.engine = self._choose_engine(device)
        self._optimizer = self._make_optimizer()
        self._scheduler = self._make_scheduler(self._optimizer)
        self._write_run_files()
        if resume_from is not None:
            self._load_checkpoint(Path(resume_from))
        else:
            # To the millisecond: runs are listed (and `--resume latest` chosen) by when they started,
            # and two short runs can start within one second.
            self.started_at = _now("milliseconds")
            self._boundary_rng = _rng_state()
        from .watch import watch_for

        self.goal_watch = watch_for(self)

    def train(self, resume_from: str | os.PathLike | None = None) -> TrainResult:
        """Run to max_steps, or until stop() / an interrupt; returns how it ended.

        ``resume_from`` is a checkpoints/step-N folder; the run continues in that run's folder.
        Raises TrainingError (status 'failed') when the GPU runs out of memory or CUDA fails.
        """
        s = self.settings
        # A stop asked for before the loop starts (a quick Stop button) is honoured, not cleared:
        # the flag is reset when a run ends instead.
        self.message = None

        device = model_device(self.model)
        # A decoder kept from the last chat or eval holds GPU memory the plan gives to training.
        from ..modeling.decoding import release_decoder

        release_decoder(self.model)
        try:
            if resume_from is not None:
                self.continue_run_of(resume_from)
            self._prepare(resume_from, device)
        except Exception as error:
            # Nothing has trained yet: the run ends here, so that the session is free at once.
            message = f"training did not start: {error}"
            self._stop.clear()
            self.set_status("failed", message)
            if isinstance(error, TrainingError):
                raise
            raise TrainingError(message) from error
        self._team_stop = False
        device = model_device(self.model)  # sharding moves a model staged on the host to this rank's GPU

        inner = unwrap(self.model)
        was_training = self.model.training
        previous_cache = getattr(inner.config, "use_cache", None)
        inner.config.use_cache = False
        if s["gradient_checkpointing"] and self.engine == "transformers":
            _checkpointing(inner, True)
        self.model.train()
        self._first_step = self.step
        self._t0 = time.perf_counter()
        self._window = []
        self.set_status("running", f"training from step {self.step} to {self.max_steps} ({self._engine_words()})")
        interrupted = False
        try:
            with self._sigint_stops():
                try:
                    if self.team is not None and self._sharded is None:
                        self._share_adapter_from_leader()
                    while self.step < self.max_steps and not self._stop_agreed():
                        started = time.perf_counter()
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        loss_sum, grad_norm, trained, tokens, lr = self._one_step()
                        if device.type == "cuda":
                            torch.cuda.synchronize(device)
                        seconds = time.perf_counter() - started
                        # The step is committed only now: a step cut short leaves step, cursor and RNG as they were.
                        self.step += 1
                        self.cursor += self.samples_per_step
                        self._boundary_rng = _rng_state()
                        self._window.append((loss_sum, trained))
                        if self.step % s["logging_steps"] == 0 or self.step == self.max_steps:
                            self._log(grad_norm, tokens, seconds, device, lr)
                        if self.step % s["save_steps"] == 0 and self.step < self.max_steps:
                            self.save_checkpoint()
                except KeyboardInterrupt:
                    interrupted = True
                    self._optimizer.zero_grad(set_to_none=True)
        except BaseException as error:
            self._optimizer.zero_grad(set_to_none=True)
            if isinstance(error, (TeamError, TrainingError)):
                message = (
                    str(error)
                    if isinstance(error, TrainingError)
                    else f"training failed at step {self.step + 1}: {error}"
                )
                self._finish(was_training, previous_cache)
                self._stop.clear()
                self.set_status("failed", message)
                raise TrainingError(message) from error
            if _is_cuda_failure(error):
                message = _failure_message(error, self.step, self._lora_targets())
                self._release_memory()
                self._finish(was_training, previous_cache)
                self._stop.clear()
                self.set_status("failed", message)
                raise TrainingError(message) from error
            self._finish(was_training, previous_cache)
            self._stop.clear()
            self.set_status("failed", f"training failed at step {self.step + 1}: {type(error).__name__}: {error}")
            raise

        if interrupted or self._stop_agreed():
            reason = "interrupted" if interrupted else (self._stop_reason or "stop requested")
            if self.status != "stopping":
                self.set_status("stopping", f"{reason}; saving a checkpoint")
            checkpoint = self.save_checkpoint()
            self._finish(was_training, previous_cache)
            self.set_status("stopped", f"{reason} at step {self.step} of {self.max_steps}; checkpoint {checkpoint}")
        else:
            checkpoint = self.save_checkpoint()
            self._finish(was_training, previous_cache)
            steps = f"{self.step} step" + ("" if self.step == 1 else "s")
            self.set_status("completed", f"completed {steps}; adapter in {checkpoint}")
        self._stop.clear()
        self._stop_reason = None
        return TrainResult(
            self.status, self.step, self.max_steps, str(self.run_dir), self.checkpoint, self.message, list(self.metrics)
        )

    def _log(self, grad_norm: float | None, tokens: int, seconds: float, device: torch.device, lr: float) -> None:
        loss_total = sum(loss for loss, _ in self._window)
        trained_total = sum(t for _, t in self._window)
        self._window = []
        memory = None
        if device.type == "cuda":
            memory = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            if self.team is not None and self._team_memory is not None:
                memory = self._team_memory
        metrics = StepMetrics(
            step=self.step,
            loss=loss_total / max(trained_total, 1),
            lr=lr,
            grad_norm=grad_norm,
            tokens_per_second=tokens / seconds if seconds > 0 else None,
            gpu_memory_gib=memory,
            epoch=self.cursor / len(self.examples),
            elapsed_seconds=round(self.elapsed_seconds, 3),
        )
        from .watch import after_step

        after_step(self, metrics)  # the goal's rate, at the steps training.watch_every picks
        self.metrics.append(metrics)
        self._append_metrics(metrics)
        for fn in list(self._step_subscribers):
            fn(metrics)

    def _lora_targets(self) -> list[str] | None:
        config = getattr(self.model, "peft_config", {}).get("default")
        if config is None:
            return None
        targets = sorted(config.target_modules or [])
        if getattr(config, "target_parameters", None):
            targets += ["experts"]
        return targets

    def _release_memory(self) -> None:
        # The optimizer's moments can be gigabytes; dropping them is what leaves the GPU usable.
        for param in self.model.parameters():
            param.grad = None
        self._optimizer = None
        self._scheduler = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _finish(self, was_training: bool, previous_cache) -> None:
        inner = unwrap(self.model)
        if self.settings["gradient_checkpointing"]:
            with contextlib.suppress(Exception):
                _checkpointing(inner, False)
        if previous_cache is not None:
            inner.config.use_cache = previous_cache
        self.model.train(was_training)
        self._elapsed_before = self.elapsed_seconds
        self._t0 = None
