"""Sending a run's metrics to the experiment trackers people already use: ``training.report_to``.

The names follow transformers' ``TrainingArguments.report_to``: "tensorboard", "wandb", "mlflow",
"trackio". Nothing is reported unless a run asks for it. Each tracker is the real library, imported
only when asked for; a missing one is refused before the first step with the command that installs
it. Only the process that writes the run folder (rank 0 of a torchrun job) reports, so a job on eight
GPUs is one run in the tracker, not eight.

Each tracker gets the run's id as its name, the run's config flattened to ``section.field`` keys, and
every logged step's metrics (loss, lr, grad_norm, tokens_per_second, gpu_memory_gib, and the goal's
rate where one is watched) at that optimizer step.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core.errors import UserError

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
# The module each tracker needs, and what a person installs to get it.
_NEEDS = {
    "tensorboard": ("tensorboard", "pip install tensorboard"),
    "wandb": ("wandb", "pip install wandb"),
    "mlflow": ("mlflow", "pip install mlflow"),
    "trackio": ("trackio", "pip install trackio"),
}
PROJECT = "oss-finetune"
ENDED = ("completed", "stopped", "failed")


class ReportError(UserError, ValueError):
    """A tracker that cannot be used; the message names it and the fix."""


def requested(report_to: Iterable[str] | str | None) -> list[str]:
    """The trackers a config asks for, checked: unknown names and missing packages are refused.

    Accepts what people write for transformers too: "none", "all" (every installed tracker) or one name.
    """
    if report_to is None:
        return []
    names = [report_to] if isinstance(report_to, str) else list(report_to)
    if names in (["none"], []):
        return []
    if names == ["all"]:
        return [name for name in TRACKERS if importlib.util.find_spec(_NEEDS[name][0]) is not None]
    for name in names:
        if name not in TRACKERS:
            raise ReportError(f"training.report_to: unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
        module, install = _NEEDS[name]
        if importlib.util.find_spec(module) is None:
            raise ReportError(
                f"training.report_to: {name!r} needs the {module} package, which is not installed: {install}"
            )
    return list(dict.fromkeys(names))


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"lora": {"r": 8}}`` -> ``{"lora.r": 8}``; lists become comma-joined text (trackers want scalars)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = ",".join(str(v) for v in value)
        else:
            flat[name] = value
    return flat


def step_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The numbers a tracker plots for one step: every numeric metric except the step itself."""
    return {
        key: float(value)
        for key, value in metrics.items()
        if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class Tracker:
    """One tracker's run: opened at the first step, fed every logged step, closed when the run ends."""

    name = ""

    def open(self, run_id: str, run_dir: Path, config: dict[str, Any]) -> None:
        raise NotImplementedError

    def log(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def close(self, status: str) -> None:
        raise NotImplementedError


class TensorBoard(Tracker):
    """Event files in the run folder's ``tensorboard/``: ``tensorboard --logdir runs`` shows every run."""

    name = "tensorboard"

    def open(self, run_id, run_dir, config):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.folder))
        self.writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in flatten(config).items()), 0)

    def log(self, values, step):
        for key, value in values.items():
            self.writer.add_scalar(f"train/{key}", value, step)
        self.writer.flush()

    def close(self, status):
        self.writer.close()


class WeightsAndBiases(Tracker):
    name = "wandb"

    def open(self, run_id, run_dir, config):
        import wandb  # type: ignore[import-not-found]

        self.run = wandb.init(
            project=PROJECT, name=run_id, id=run_id, config=flatten(config), dir=str(run_dir), resume="allow"
        )

    def log(self, values, step):
        self.run.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self, status):
        self.run.finish(exit_code=0 if status != "failed" else 1)


class MLflow(Tracker):
    name = "mlflow"

    def open(self, run_id, run_dir, config):
        import mlflow  # type: ignore[import-not-found]

        self.mlflow = mlflow
        mlflow.set_experiment(PROJECT)
        self.run = mlflow.start_run(run_name=run_id)
        # MLflow keeps parameters as text of at most a few hundred characters.
        mlflow.log_params({k: str(v)[:500] for k, v in flatten(config).items()})

    def log(self, values, step):
        self.mlflow.log_metrics({k.replace("/", "_"): v for k, v in values.items()}, step=step)

    def close(self, status):
        self.mlflow.end_run(status={"completed": "FINISHED", "failed": "FAILED"}.get(status, "KILLED"))


class Trackio(Tracker):
    name = "trackio"

    def open(self, run_id, run_dir, config):
        import trackio  # type: ignore[import-not-found]

        self.trackio = trackio
        trackio.init(project=PROJECT, name=run_id, config=flatten(config), resume="allow")

    def log(self, values, step):
        self.trackio.log({f"train/{k}": v for k, v in values.items()}, step=step)

    def close(self, status):
        self.trackio.finish()


_CLASSES: dict[str, type[Tracker]] = {
    "tensorboard": TensorBoard,
    "wandb": WeightsAndBiases,
    "mlflow": MLflow,
    "trackio": Trackio,
}


class Reporting:
    """The trackers of one run, subscribed to its Trainer's steps and status."""

    def __init__(self, trainer, names: list[str]):
        self.trainer = trainer
        self.names = names
        self.trackers: list[Tracker] = []
        self.opened = False

    def _open(self) -> None:
        self.opened = True
        # Rank 0 writes the run folder; the other ranks of a job stay silent here too.
        if not getattr(self.trainer, "_writes_files", True):
            return
        run_dir = Path(self.trainer.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in self.names:
            tracker = _CLASSES[name]()
            tracker.open(str(self.trainer.run_id), run_dir, dict(self.trainer.run_config))
            self.trackers.append(tracker)
        if self.trackers:
            print(f"reporting this run to {', '.join(self.names)}", flush=True)

    def step(self, metrics) -> None:
        if not self.opened:
            self._open()
        data = metrics.to_dict() if hasattr(metrics, "to_dict") else dict(metrics)
        values = step_values(data)
        for tracker in self.trackers:
            tracker.log(values, int(data["step"]))

    def status(self, event) -> None:
        if event.status not in ENDED or not self.opened:
            return
        for tracker in self.trackers:
            tracker.close(event.status)
        self.trackers = []
        self.opened = False


def attach(trainer) -> Reporting | None:
    """Subscribe the trackers ``training.report_to`` names to ``trainer``; None when it names none."""
    names = requested(trainer.settings.get("report_to"))
    if not names:
        return None
    reporting = Reporting(trainer, names)
    trainer.on_step(reporting.step)
    trainer.on_status(reporting.status)
    return reporting
