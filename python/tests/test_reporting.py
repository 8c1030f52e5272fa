"""``training.report_to``, read as a manual: a run also sends its steps to the trackers people use.

TensorBoard runs for real (its event files are read back). W&B, MLflow and trackio talk to servers
this machine cannot reach, so their modules are stand-ins that record what the run called.
"""

from __future__ import annotations

import sys
import types

import pytest
from test_train import adapted, examples, settings  # noqa: F401 - examples is a fixture

from oss_finetune.core.errors import UserError
from oss_finetune.training import reporting
from oss_finetune.training.trainer import Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_lora_model_and_examples(examples):  # noqa: F811
    return adapted(), examples


def _train(model_and_examples, tmp_path, **training):
    model, rows = model_and_examples
    trainer = Trainer(model, rows, settings(tmp_path, max_steps=3, logging_steps=1, **training), handle_sigint=False)
    result = trainer.train()
    return trainer, result


def test_nothing_is_reported_unless_asked(tiny_lora_model_and_examples, tmp_path):
    trainer, result = _train(tiny_lora_model_and_examples, tmp_path)
    assert result.status == "completed"
    assert not (trainer.run_dir / "tensorboard").exists()


def test_tensorboard_gets_every_logged_step(tiny_lora_model_and_examples, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer, result = _train(tiny_lora_model_and_examples, tmp_path, report_to=["tensorboard"])
    assert "reporting this run to tensorboard" in capsys.readouterr().out
    events = EventAccumulator(str(trainer.run_dir / "tensorboard"))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2, 3]
    assert [round(e.value, 4) for e in losses] == [round(m.loss, 4) for m in result.metrics]
    assert "train/lr" in events.Tags()["scalars"]


def test_an_unknown_or_missing_tracker_is_refused_with_the_fix(monkeypatch):
    with pytest.raises(UserError, match=r"training.report_to: unknown tracker 'wandbb'; choose from tensorboard"):
        reporting.requested(["wandbb"])
    monkeypatch.setattr(reporting.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"'mlflow' needs the mlflow package.*pip install mlflow"):
        reporting.requested(["mlflow"])
    # transformers' spellings: "none" is nothing, "all" is whatever is installed (here: nothing).
    assert reporting.requested("none") == [] and reporting.requested("all") == []


def _recording_module(name: str, calls: list):
    module = types.ModuleType(name)

    def record(what):
        return lambda *args, **kwargs: calls.append((what, args, kwargs)) or run

    run = types.SimpleNamespace(log=record("log"), finish=record("finish"))
    for what in ("init", "log", "finish", "set_experiment", "start_run", "log_params", "log_metrics", "end_run"):
        setattr(module, what, record(what))
    module.__spec__ = types.SimpleNamespace(name=name)  # type: ignore[assignment]
    return module


@pytest.mark.parametrize("tracker", ["wandb", "mlflow", "trackio"])
def test_hosted_trackers_get_the_config_and_every_step(tiny_lora_model_and_examples, tmp_path, monkeypatch, tracker):
    calls: list = []
    monkeypatch.setitem(sys.modules, tracker, _recording_module(tracker, calls))
    monkeypatch.setattr(reporting.importlib.util, "find_spec", lambda name: object())
    trainer, result = _train(tiny_lora_model_and_examples, tmp_path, report_to=[tracker])
    opened = calls[0] if tracker != "mlflow" else next(c for c in calls if c[0] == "start_run")
    assert trainer.run_id in (opened[2].get("name"), opened[2].get("run_name"))
    logged = [c for c in calls if c[0] in ("log", "log_metrics")]
    assert [c[2]["step"] for c in logged] == [1, 2, 3]
    assert any(abs(v - result.metrics[0].loss) < 1e-9 for v in logged[0][1][0].values())
    assert calls[-1][0] in ("finish", "end_run")
    if tracker == "mlflow":
        params = next(c for c in calls if c[0] == "log_params")[1][0]
        assert params["training.max_steps"] == "3"


def test_the_config_is_flattened_to_scalars():
    flat = reporting.flatten({"lora": {"r": 8, "target_modules": ["q_proj", "v_proj"]}, "training": {"seed": 1}})
    assert flat == {"lora.r": 8, "lora.target_modules": "q_proj,v_proj", "training.seed": 1}


def test_the_magic_names_the_trackers_it_knows(shell, capsys):
    from IPython.core.error import UsageError

    shell.run_line_magic("load_ext", "oss_finetune")
    with pytest.raises(
        UsageError,
        match=r"training.report_to\[0\].*from tensorboard, wandb, mlflow, trackio, e.g. --report-to tensorboard",
    ):
        shell.run_line_magic("oss_finetune", "train --report-to tensorbored --max-steps 1")
