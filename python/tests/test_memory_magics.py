"""The memory plan in `%oss_finetune load` and `train`, in a real IPython InteractiveShell, and the bench
script's CPU smoke mode.

The model is embedded:tiny on the CPU. To see the GPU verdict without a GPU, a test tells the planner
that the loaded model sits on a CUDA GPU with little free memory (memory.gpu_info and the loaded
model's device): the refusal path is the same one a real GPU takes.
"""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from oss_finetune.notebook import session as session_module
from oss_finetune.training import memory

TINY_TRAINING = "--max-steps 1 --batch-size 1 --gradient-accumulation-steps 2 --save-steps 100"


@pytest.fixture(autouse=True)
def fresh_session(tmp_path, one_torch_thread):
    return session_module.reset_session({"training": {"output_dir": str(tmp_path / "runs")}})


def run(shell, capsys, source):
    result = shell.run_cell(source)
    out, err = capsys.readouterr()
    return result, out, err


def loaded_with_data(shell, capsys, training: dict | None = None):
    """The session after `%oss_finetune load embedded:tiny` and `data`, with ``training`` settings laid over."""
    run(shell, capsys, "%oss_finetune load embedded:tiny")
    run(shell, capsys, "%oss_finetune data")
    session = session_module.get_session()
    if training:
        session.set_config({"training": training})
    return session


def pretend_small_gpu(monkeypatch, free_gib: float):
    """The planner sees the loaded model on a CUDA GPU with ``free_gib`` free; training itself stays on the CPU."""
    session = session_module.get_session()
    monkeypatch.setattr(session.loaded, "device", torch.device("cuda"))
    # As on a real GPU, the loaded weights are this process's allocated memory, on top of what is free.
    held = memory.loaded_weight_bytes(session.loaded.model)
    monkeypatch.setattr(
        memory,
        "gpu_info",
        lambda device=None: memory.GpuInfo(
            "Pretend GPU", int((free_gib + 0.5) * memory.GIB) + held, int(free_gib * memory.GIB), held, held
        ),
    )


def test_load_shows_the_weights_and_the_expected_training_peak(shell, capsys):
    result, out, err = run(shell, capsys, "%oss_finetune load embedded:tiny")
    assert result.success, err
    assert out.startswith("loaded embedded:tiny: GptOssForCausalLM")
    assert "memory plan (training with the current settings): CPU run" in out
    weights = [line for line in out.splitlines() if line.strip().startswith("weights ")]
    assert weights and "as loaded" in weights[0]
    assert "peak (torch allocated)" in out


def test_train_shows_the_plan_before_the_run_and_trains_on_a_cpu(shell, capsys):
    run(shell, capsys, "%oss_finetune load embedded:tiny")
    result, out, err = run(shell, capsys, f"%oss_finetune train {TINY_TRAINING}")
    assert result.success, err
    assert out.index("memory plan: CPU run") < out.index("completed 1 step;")
    # The plan used the prepared rows, not the worst case of max_seq_length tokens each: the fast engine
    # (auto's choice for GPT-OSS) packs a step's two conversations, at most the two longest.
    prepared = session_module.get_session().prepared
    first, second = sorted((len(e.input_ids) for e in prepared.examples), reverse=True)[:2]
    assert f"fast engine, packed micro-batches of up to {first + second:,} tokens" in out


def test_train_refuses_a_run_that_will_not_fit_with_the_change_that_fits(shell, capsys, monkeypatch):
    session = loaded_with_data(shell, capsys, {"engine": "transformers"})  # padded micro-batches of batch_size rows
    # Free memory between what micro-batches of 4 and of 2 conversations need: the planner must propose 2 x 2.
    pretend_small_gpu(monkeypatch, free_gib=100)
    four = session.memory_plan({"training": {"batch_size": 4, "gradient_accumulation_steps": 1}})
    two = session.memory_plan({"training": {"batch_size": 2, "gradient_accumulation_steps": 2}})
    free = (four.reserved_bytes + two.reserved_bytes) / 2 / memory.GIB
    pretend_small_gpu(monkeypatch, free_gib=free)
    result, out, err = run(
        shell, capsys, "%oss_finetune train --batch-size 4 --gradient-accumulation-steps 1 --max-steps 1"
    )
    assert not result.success
    [line] = [text for text in err.splitlines() if text.strip()]
    assert line.startswith("UsageError: training refused: predicted training peak")
    assert "with the allocator's cache) of " in line
    assert (
        "GiB available on Pretend GPU: will not fit; micro-batches of 2 with 2 accumulation steps (same "
        "effective batch): " in line
    )
    assert "run `%oss_finetune train --batch-size 2 --gradient-accumulation-steps 2`" in line
    assert line.endswith("or add --force to try anyway.")
    assert session.trainer is None, "nothing started"


def test_force_trains_anyway(shell, capsys, monkeypatch):
    loaded_with_data(shell, capsys)
    pretend_small_gpu(monkeypatch, free_gib=0.01)
    result, out, err = run(shell, capsys, f"%oss_finetune train --force {TINY_TRAINING}")
    assert result.success, err
    assert "memory plan (--force: not checked): predicted training peak" in out and "will not fit" in out
    assert "completed 1 step;" in out


def test_the_suggested_change_makes_the_plan_fit(shell, capsys, monkeypatch):
    session = loaded_with_data(
        shell,
        capsys,
        {"engine": "transformers", "gradient_checkpointing": False, "batch_size": 8, "gradient_accumulation_steps": 1},
    )
    pretend_small_gpu(monkeypatch, free_gib=100)
    one = session.memory_plan({"training": {"batch_size": 1, "gradient_accumulation_steps": 8}})
    pretend_small_gpu(monkeypatch, free_gib=one.reserved_bytes / memory.GIB + 0.01)
    refused = session.memory_plan()
    assert refused.fits is False and refused.suggestion is not None
    session.set_config(refused.suggestion.changes)
    assert session.memory_plan().fits is True


def test_the_plan_bundle_has_a_html_twin(shell):
    from oss_finetune.notebook import display

    plan = memory.plan_memory(
        {"model": {"name_or_path": "embedded:gpt-oss-20b-random"}},
        device="cuda",
        gpu=memory.GpuInfo("GPU <x>", 100 * memory.GIB, 90 * memory.GIB),
        bitsandbytes=False,
    )
    bundle = display.memory_bundle(plan, lead="loaded <model>")
    assert bundle["text/plain"].startswith("loaded <model>\nmemory plan: predicted training peak")
    assert "loaded &lt;model&gt;" in bundle["text/html"] and "GPU &lt;x&gt;" in bundle["text/html"]
    assert "<table>" in bundle["text/html"]


def test_the_bench_smoke_mode_predicts_every_configuration(tmp_path, capsys):
    path = Path(__file__).resolve().parents[2] / "bench" / "memory_planner.py"
    spec = importlib.util.spec_from_file_location("memory_planner_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    target = tmp_path / "memory_planner.json"
    assert bench.main(["--smoke", "--json", str(target)]) == 0
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith('{"config"')]
    assert [row["config"] for row in lines] == list(bench.SMOKE_CONFIGS)
    record = json.loads(target.read_text())
    for row in record["configs"]:
        assert row["status"] == "completed"
        assert row["predicted_trainable"] == row["trainable"]
        assert row["predicted_gib"] > 0 and row["measured_gib"] is None  # nothing to measure on a CPU
    assert "predicted  measured" in out
    # The GPU catalogue covers at least 6 configurations, as the issue asks.
    assert len([n for n, c in bench.CONFIGS.items() if not c.get("needs")]) >= 6


def test_train_packs_fewer_tokens_by_itself_when_that_alone_makes_the_run_fit(shell, capsys, monkeypatch):
    session = loaded_with_data(shell, capsys, {"engine": "fast", "batch_size": 1, "gradient_accumulation_steps": 8})
    pretend_small_gpu(monkeypatch, free_gib=100)
    default = session.memory_plan()
    floor = session.config["data"]["max_seq_length"]
    smallest = session.memory_plan({"training": {"pack_tokens": floor}})
    assert smallest.reserved_bytes < default.reserved_bytes
    # Room for the smallest pack, not for the engine's default one (the budget counts the held weights too).
    held = memory.loaded_weight_bytes(session.loaded.model)
    pretend_small_gpu(
        monkeypatch, free_gib=((smallest.reserved_bytes + default.reserved_bytes) / 2 - held) / memory.GIB
    )
    assert session.memory_plan().fits is False
    result, out, err = run(shell, capsys, "%oss_finetune train --max-steps 1 --save-steps 100")
    assert result.success, err
    chosen = session.config["training"]["pack_tokens"]
    assert floor <= chosen < default.settings["pack_tokens"]
    # The note leads the plan; only the adapter's line, added on the way, comes before it.
    lead = (
        f"packing at most {chosen:,} tokens per micro-batch instead of "
        f"{default.settings['pack_tokens']:,}, so that the run fits"
    )
    assert out.startswith("added LoRA: ") and out.splitlines()[1].startswith(lead)
    assert "completed 1 step;" in out
    assert session.trainer.pack_tokens == chosen


def test_a_pack_chosen_by_the_user_is_never_changed(shell, capsys, monkeypatch):
    session = loaded_with_data(
        shell, capsys, {"engine": "fast", "pack_tokens": 16384, "gradient_accumulation_steps": 8}
    )
    pretend_small_gpu(monkeypatch, free_gib=0.001)
    plan, note = session.fit_training_to_memory()
    assert plan.fits is False and note == ""
    assert session.config["training"]["pack_tokens"] == 16384
