"""The training loop on the embedded GPT-OSS: loss falling, token-weighted loss, resume equivalence,
stop and interrupt with a checkpoint, OOM messages, PEFT save / load / merge, generation."""

import json
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from oss_finetune.core import schema
from oss_finetune.modeling.model import apply_lora, build_embedded_model, load_model
from oss_finetune.training.trainer import (
    StepMetrics,
    Trainer,
    TrainingError,
    TrainingExample,
    generate,
    load_adapter,
    merge_adapter,
    save_adapter,
    token_logprobs,
)

SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "Le chat est assis sur le tapis et regarde par la fenêtre.",
    "El gato se sentó en la alfombra y miró por la ventana.",
    "Die Katze saß auf der Matte und schaute aus dem Fenster.",
    "Il gatto era seduto sul tappeto e guardava fuori dalla finestra.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def half_trained(tokenizer, sentences) -> list[TrainingExample]:
    """Real-tokenizer sentences with the loss mask on the second half of each."""
    result = []
    for sentence in sentences:
        ids = tokenizer.encode(sentence, add_special_tokens=False)
        half = len(ids) // 2
        result.append(TrainingExample(ids, [False] * half + [True] * (len(ids) - half)))
    return result


@pytest.fixture(scope="module")
def examples(tokenizer):
    return half_trained(tokenizer, SENTENCES)


def adapted(**lora):
    return apply_lora(build_embedded_model(), {"r": 8, "alpha": 16, **lora}, seed=0)


def settings(tmp_path, **overrides):
    values = {
        "max_steps": 4,
        "batch_size": 2,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-2,
        "warmup_steps": 0,
        "lr_scheduler": "constant",
        "gradient_checkpointing": False,
        "save_steps": 100,
        "seed": 11,
        "output_dir": str(tmp_path / "runs"),
    }
    values.update(overrides)
    return values


def test_loss_falls_over_30_steps_and_the_adapter_changes_generations(tmp_path, examples, tokenizer):
    model = adapted()
    prompt = examples[0].input_ids[:6]
    before_generation = generate(model, tokenizer, prompt, max_new_tokens=8)
    before_scores = [token_logprobs(model, e.input_ids, e.trained) for e in examples]

    trainer = Trainer(model, examples, settings(tmp_path, max_steps=30, batch_size=3), handle_sigint=False)
    statuses, steps = [], []
    trainer.on_status(lambda event: statuses.append(event.status))
    trainer.on_step(steps.append)
    result = trainer.train()

    losses = [m.loss for m in result.metrics]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses
    assert statuses == ["running", "completed"] and result.status == "completed"
    assert [m.step for m in steps] == list(range(1, 31)) and isinstance(steps[0], StepMetrics)

    # Step 1 saw all six sentences with the adapter still a no-op: its loss is the mean over every
    # trained token, not the mean of per-micro-batch or per-sentence means.
    token_losses = [loss for s in before_scores for loss, t in zip(s.losses, s.trained) if t]
    assert losses[0] == pytest.approx(sum(token_losses) / len(token_losses), rel=1e-5)
    per_sentence = sum(s.mean_loss for s in before_scores) / len(before_scores)
    assert abs(per_sentence - losses[0]) > 1e-4  # the two definitions really differ on this data

    first = steps[0]
    assert first.lr == pytest.approx(1e-2) and first.grad_norm > 0 and first.tokens_per_second > 0
    assert first.epoch == pytest.approx(1.0) and first.elapsed_seconds >= 0
    assert first.gpu_memory_gib is None or torch.cuda.is_available()

    run_dir = Path(result.run_dir)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 31))
    assert json.loads((run_dir / "config.json").read_text())["config"]["training"]["max_steps"] == 30
    schema.validate("training-run", trainer.snapshot())

    after_generation = generate(model, tokenizer, prompt, max_new_tokens=8)
    assert after_generation != before_generation
    assert generate(model, tokenizer, prompt, max_new_tokens=8, use_adapter=False) == before_generation

    after = token_logprobs(model, examples[0].input_ids, examples[0].trained)
    base = token_logprobs(model, examples[0].input_ids, examples[0].trained, use_adapter=False)
    assert after.mean_loss < before_scores[0].mean_loss
    assert base.logprobs[1:] == pytest.approx(before_scores[0].logprobs[1:], abs=1e-5)


def run_losses(result):
    return {m.step: m.loss for m in result.metrics}


def test_resume_from_a_checkpoint_gives_the_same_next_losses(tmp_path, examples):
    # Dropout on the adapter makes the RNG state part of what a checkpoint must restore.
    config = settings(tmp_path, max_steps=4, save_steps=2, lr_scheduler="linear", warmup_steps=1)
    straight = Trainer(adapted(dropout=0.1), examples, config, handle_sigint=False).train()

    first = Trainer(adapted(dropout=0.1), examples, config, handle_sigint=False)
    first.on_step(lambda m: first.stop() if m.step == 3 else None)
    stopped = first.train()
    assert stopped.status == "stopped" and stopped.step == 3
    checkpoint = Path(stopped.run_dir) / "checkpoints" / "step-2"
    assert checkpoint.is_dir()

    resumed = Trainer(adapted(dropout=0.1), examples, config, handle_sigint=False).train(resume_from=checkpoint)
    assert resumed.status == "completed" and resumed.run_dir == stopped.run_dir
    expected, got = run_losses(straight), run_losses(resumed)
    for step in (1, 2, 3, 4):
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6), (step, got, expected)
    # The abandoned step 3 of the stopped branch is replaced, not duplicated, in the history.
    lines = (Path(resumed.run_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3, 4]


def test_stop_from_another_thread_stops_at_a_step_boundary_with_a_checkpoint(tmp_path, examples):
    trainer = Trainer(adapted(), examples, settings(tmp_path, max_steps=10), handle_sigint=False)
    events = []
    trainer.on_status(events.append)

    def ask_from_elsewhere(metrics):
        if metrics.step == 2:
            thread = threading.Thread(target=trainer.stop, args=("stop button",))
            thread.start()
            thread.join()

    trainer.on_step(ask_from_elsewhere)
    result = trainer.train()
    assert result.status == "stopped" and result.step == 2
    assert [e.status for e in events] == ["running", "stopping", "stopped"]
    assert "stop button" in result.message
    checkpoint = Path(result.checkpoint)
    assert checkpoint.name == "step-2"
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pt",
        "trainer_state.json",
    } <= {p.name for p in checkpoint.iterdir()}
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["cursor"] == 2 * 2 * 2
    assert not [p for p in checkpoint.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_a_stop_before_the_first_step_is_honoured(tmp_path, examples):
    trainer = Trainer(adapted(), examples, settings(tmp_path, max_steps=10), handle_sigint=False)
    trainer.stop("stopped early")
    result = trainer.train()
    assert result.status == "stopped" and result.step == 0 and Path(result.checkpoint).name == "step-0"


def test_a_keyboard_interrupt_stops_gracefully_with_a_checkpoint(tmp_path, examples):
    trainer = Trainer(adapted(), examples, settings(tmp_path, max_steps=10), handle_sigint=False)

    def interrupt(metrics):
        if metrics.step == 2:
            raise KeyboardInterrupt

    trainer.on_step(interrupt)
    result = trainer.train()
    assert result.status == "stopped" and result.step == 2
    assert Path(result.checkpoint).name == "step-2" and "interrupted" in result.message
    assert all(p.grad is None for p in trainer.model.parameters())


def test_sigint_becomes_a_graceful_stop_and_the_handler_is_restored(tmp_path, examples):
    previous = signal.getsignal(signal.SIGINT)
    trainer = Trainer(adapted(), examples, settings(tmp_path, max_steps=10))
    trainer.on_step(lambda m: os.kill(os.getpid(), signal.SIGINT) if m.step == 1 else None)
    result = trainer.train()
    assert result.status == "stopped" and result.step == 1
    assert Path(result.checkpoint).name == "step-1"
    assert signal.getsignal(signal.SIGINT) is previous


def test_out_of_memory_becomes_a_clear_error_and_the_model_stays_usable(tmp_path, examples):
    model = adapted()
    trainer = Trainer(model, examples, settings(tmp_path, max_steps=5), handle_sigint=False)
    statuses = []
    trainer.on_status(lambda e: statuses.append(e.status))

    def oom(metrics):
        if metrics.step == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.07 GiB")

    trainer.on_step(oom)
    with pytest.raises(TrainingError) as caught:
        trainer.train()
    message = str(caught.value)
    for advice in (
        "out of GPU memory",
        "max_seq_length",
        "load_in_4bit",
        "target modules",
        "q_proj",
        "gradient_accumulation_steps",
    ):
        assert advice in message
    assert isinstance(caught.value.__cause__, torch.OutOfMemoryError)
    assert statuses[-1] == "failed" and trainer.snapshot()["status"] == "failed"
    assert all(p.grad is None for p in model.parameters())
    # The same model trains again in a new run.
    again = Trainer(model, examples, settings(tmp_path, max_steps=1), handle_sigint=False).train()
    assert again.status == "completed"


def test_a_checkpoint_that_fails_to_write_leaves_nothing_behind(tmp_path, examples, monkeypatch):
    trainer = Trainer(adapted(), examples, settings(tmp_path, max_steps=1), handle_sigint=False)
    real_save = torch.save

    def failing_save(obj, path, *args, **kwargs):
        if str(path).endswith("scheduler.pt"):
            raise OSError("disk full")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError):
        trainer.train()
    checkpoints = Path(trainer.run_dir) / "checkpoints"
    assert list(checkpoints.iterdir()) == []


def test_epochs_set_the_step_count_when_max_steps_is_null(tmp_path, examples):
    config = settings(tmp_path, max_steps=None, epochs=2, batch_size=3, gradient_accumulation_steps=1)
    result = Trainer(adapted(), examples, config, handle_sigint=False).train()
    assert result.step == result.max_steps == 4
    assert result.metrics[-1].epoch == pytest.approx(2.0)


def test_8bit_adam_without_bitsandbytes_or_cuda_says_what_to_use(tmp_path, examples):
    trainer = Trainer(adapted(), examples, settings(tmp_path, optimizer="adamw_8bit"), handle_sigint=False)
    if torch.cuda.is_available():
        pytest.skip("checks the CPU message")
    with pytest.raises(TrainingError, match="adamw_torch"):
        trainer.train()


def test_the_adapter_saves_in_peft_format_loads_and_merges(tmp_path, examples):
    model = adapted(target_experts=True)
    result = Trainer(model, examples, settings(tmp_path, max_steps=3), handle_sigint=False).train()
    ids = torch.tensor([examples[1].input_ids])
    model.eval()
    with torch.no_grad():
        adapter_logits = model(ids).logits.clone()
        with model.disable_adapter():
            base_logits = model(ids).logits.clone()
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-4)  # it learned something

    saved = save_adapter(model, tmp_path / "adapter")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= set(os.listdir(saved))
    for folder in (saved, result.checkpoint):  # a checkpoint is itself a PEFT adapter folder
        reloaded = load_adapter(build_embedded_model(), folder)
        with torch.no_grad():
            assert torch.allclose(reloaded(ids).logits, adapter_logits, atol=1e-5)

    merged = merge_adapter(model, tmp_path / "merged")
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapter_logits, atol=1e-4)
    from_disk = load_model(
        {"name_or_path": str(tmp_path / "merged"), "device": "cpu", "dtype": "float32"}, tokenizer=object()
    )
    with torch.no_grad():
        assert torch.allclose(from_disk.model(ids).logits, adapter_logits, atol=1e-4)


def test_sampling_with_a_seed_repeats_and_streams_token_by_token(examples, tokenizer):
    model = adapted()
    prompt = examples[2].input_ids[:5]
    streamed = []
    first = generate(model, tokenizer, prompt, max_new_tokens=6, temperature=1.0, seed=5, on_token=streamed.append)
    assert first == generate(model, tokenizer, prompt, max_new_tokens=6, temperature=1.0, seed=5)
    assert streamed == first and len(first) == 6
    scores = token_logprobs(model, examples[2].input_ids, examples[2].trained)
    assert scores.logprobs[0] is None and all(lp <= 0 for lp in scores.logprobs[1:])
    assert scores.to_dict()["mean_loss"] == pytest.approx(scores.mean_loss)


def test_latest_is_the_run_that_started_last_even_within_one_second(tmp_path, examples, monkeypatch):
    from datetime import datetime as real_datetime

    import oss_finetune.training.trainer as train_module
    from oss_finetune.notebook.session import Session

    ticks = iter(range(10_000))

    class OneSecond(real_datetime):
        """A clock in which everything happens within 12:00:00, a millisecond apart."""

        @classmethod
        def now(cls, tz=None):
            return real_datetime(2026, 11, 28, 12, 0, 0, 1000 * (next(ticks) % 1000), tzinfo=tz)

    monkeypatch.setattr(train_module, "datetime", OneSecond)
    # The second run's id sorts first, so only the start time can tell the two apart.
    for run_id in ("20261128-120000-ffff", "20261128-120000-0000"):
        Trainer(adapted(), examples, settings(tmp_path, max_steps=1), run_id=run_id, handle_sigint=False).train()
    session = Session({"training": {"output_dir": str(tmp_path / "runs")}})
    assert [r.run_id for r in session.list_runs()] == ["20261128-120000-ffff", "20261128-120000-0000"]
    assert "20261128-120000-0000" in session.resolve_checkpoint("latest")
