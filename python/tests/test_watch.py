"""Watching the goal while training (training.watch_every): the same training with and without it,
the measure in metrics.jsonl and the payload, eval mode during the generation, and the errors."""

import json

import pytest
import torch
from test_train import half_trained
from test_train import settings as train_settings

from oss_finetune.core import schema
from oss_finetune.modeling.model import apply_lora, build_embedded_model
from oss_finetune.training import language, watch
from oss_finetune.training.trainer import Trainer, TrainingError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "Le chat est assis sur le tapis et regarde par la fenêtre.",
    "El gato se sentó en la alfombra y miró por la ventana.",
    "Die Katze saß auf der Matte und schaute aus dem Fenster.",
]


@pytest.fixture(scope="module")
def examples(tokenizer):
    return half_trained(tokenizer, SENTENCES)


def adapted():
    # Dropout on: a watch that moved the random stream would change the next step's loss.
    return apply_lora(build_embedded_model(), {"r": 4, "alpha": 8, "dropout": 0.1}, seed=0)


def settings(tmp_path, **overrides):
    return train_settings(tmp_path, **{"gradient_accumulation_steps": 1, "seed": 5, **overrides})


def run_config(training, source="embedded:multilingual"):
    return {"model": {"name_or_path": "embedded:tiny"}, "data": {"source": source}, "training": training}


def short_watch(monkeypatch, new_tokens=12):
    """Held-out answers cut short: the tiny random model never stops on its own."""
    original = watch.watch_for
    monkeypatch.setattr(watch, "watch_for", lambda trainer, **kw: original(trainer, max_new_tokens=new_tokens, **kw))


def test_watching_the_goal_changes_no_loss_and_records_the_rate(tmp_path, examples, monkeypatch):
    short_watch(monkeypatch)
    plain = Trainer(adapted(), examples, settings(tmp_path / "a"), handle_sigint=False)
    plain.train()
    watched_settings = settings(tmp_path / "b", watch_every=2, watch_count=3)
    watched = Trainer(
        adapted(), examples, watched_settings, run_config=run_config(watched_settings), handle_sigint=False
    )
    lines = []
    watched.on_step(lambda m: lines.append((m.step, watched.message)))
    watched.train()

    assert [m.loss for m in watched.metrics] == [m.loss for m in plain.metrics]
    assert [m.grad_norm for m in watched.metrics] == [m.grad_norm for m in plain.metrics]
    for (name, a), (_, b) in zip(plain.model.named_parameters(), watched.model.named_parameters()):
        if a.requires_grad:
            assert torch.equal(a, b), name
    assert watched.model.training  # back in training mode after each watch

    rows = [json.loads(line) for line in (watched.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "goal" in r] == [2, 4]
    goal = rows[1]["goal"]
    assert goal["goal"] == "language" and goal["label"] == "reasoned in the requested language"
    assert goal["total"] == 3 and 0 <= goal["passed"] <= 3 and goal["rate"] == goal["passed"] / 3
    assert "goal" not in rows[0]  # an unwatched step carries none
    # The run's line says what was measured.
    said = dict(lines)[2]
    assert said.startswith("step 2: watched the goal on 3 held-out prompts of embedded:multilingual-heldout: ")
    assert "reasoned in the requested language" in said
    schema.validate("training-run", watched.snapshot())


def test_the_watch_generates_in_eval_mode_from_a_spread_of_languages(tmp_path, examples, monkeypatch):
    short_watch(monkeypatch)
    seen = []
    original = language.reasoning_language_rate

    def spy(model, tokenizer, rows, effort, **kw):
        seen.append((model.training, [r.language for r in rows]))
        return original(model, tokenizer, rows, effort, **kw)

    monkeypatch.setattr(language, "reasoning_language_rate", spy)
    values = settings(tmp_path, max_steps=1, watch_every=1, watch_count=4)
    Trainer(adapted(), examples, values, run_config=run_config(values), handle_sigint=False).train()
    [(training_mode, languages)] = seen
    assert training_mode is False
    assert len(set(languages)) == 4 and "English" not in languages


def test_a_logging_step_past_the_multiple_is_watched(tmp_path, examples, monkeypatch):
    short_watch(monkeypatch, new_tokens=4)
    values = settings(tmp_path, max_steps=7, logging_steps=3, watch_every=2, watch_count=1)
    trainer = Trainer(adapted(), examples, values, run_config=run_config(values), handle_sigint=False)
    trainer.train()
    # Logged at 3, 6, 7: 3 is the first logged step from 2 on, 6 from 4 and 6 on, 7 the last step.
    assert [m.step for m in trainer.metrics if m.goal] == [3, 6, 7]


def test_tool_rows_are_watched_for_valid_calls(tmp_path, examples, monkeypatch):
    short_watch(monkeypatch, new_tokens=4)
    values = settings(tmp_path, max_steps=1, watch_every=1, watch_count=2)
    trainer = Trainer(
        adapted(), examples, values, run_config=run_config(values, "embedded:tool-calls"), handle_sigint=False
    )
    trainer.train()
    goal = trainer.metrics[-1].goal
    assert goal["goal"] == "tool_calls" and goal["total"] == 2
    assert goal["label"] == "called the right tool with valid arguments"


def test_without_held_out_rows_the_run_does_not_start_and_says_which_field(tmp_path, examples):
    rows = tmp_path / "mine.jsonl"
    rows.write_text("")
    values = settings(tmp_path, watch_every=2)
    trainer = Trainer(adapted(), examples, values, run_config=run_config(values, str(rows)), handle_sigint=False)
    with pytest.raises(TrainingError, match="training did not start: training.watch_prompts: .* set training.watch"):
        trainer.train()


def test_held_out_rows_without_a_goal_are_refused(tmp_path, examples):
    rows = tmp_path / "english.jsonl"
    rows.write_text(
        json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}) + "\n"
    )
    values = settings(tmp_path, watch_every=2, watch_prompts=str(rows))
    trainer = Trainer(adapted(), examples, values, run_config=run_config(values), handle_sigint=False)
    with pytest.raises(TrainingError, match="no goal to watch"):
        trainer.train()


def test_off_by_default():
    from oss_finetune.core.config import FinetuneConfig

    assert FinetuneConfig().training.watch_every is None


def test_under_fsdp_sharding_the_goal_is_not_watched_and_the_run_says_why():
    from types import SimpleNamespace

    # Rank 0 alone would wait forever for the other ranks' shares of the weights it generates with.
    trainer = SimpleNamespace(
        settings={"watch_every": 2}, team=None, _sharded=object(), sharding_line="sharded over 2 ranks", run_config={}
    )
    assert watch.watch_for(trainer) is None
    assert trainer.sharding_line == (
        "sharded over 2 ranks; training.watch_every: the goal is not watched while FSDP shards the model; "
        "run eval after training"
    )
