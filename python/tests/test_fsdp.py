"""The frozen base sharded over torchrun's ranks with FSDP2 (``training.sharding: fsdp``), read as a manual.

Two ranks on the CPU (gloo) train the embedded tiny model with LoRA on the attention and the experts:
the same losses and the same saved adapter as one process, with a step that gives one rank fewer
micro-batches than the other (it makes passes that weigh nothing, so that both gather every layer
together). A run stopped by two sharded ranks resumes in one process, and the other way round. The
memory planner's per-GPU figure says when sharding is what makes a model fit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from oss_finetune.training import memory, sharding

CONFIG = {
    "model": {"name_or_path": "embedded:tiny"},
    "data": {"limit": 12, "max_seq_length": 192},
    "lora": {"r": 4, "alpha": 8, "target_experts": True},
    "training": {
        "max_steps": 3,
        # Three conversations a step: split two and one between the ranks, so one of them pads.
        "batch_size": 1,
        "gradient_accumulation_steps": 3,
        "logging_steps": 1,
        "save_steps": 100,
        "learning_rate": 1e-3,
        "pack_tokens": 200,
    },
}

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
TWO_RANKS = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "oss_finetune"]
ONE = [sys.executable, "-m", "oss_finetune"]


def write_config(tmp_path: Path, name: str, **training) -> tuple[Path, Path]:
    out = tmp_path / name
    config = {**CONFIG, "training": {**CONFIG["training"], "output_dir": str(out), **training}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, out


def run(launcher: list[str], path: Path, *extra: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*launcher, "train", str(path), *extra], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def results(out: Path) -> tuple[Path, list[float], dict]:
    [folder] = [p for p in out.iterdir() if p.is_dir()]  # rank 0 alone writes the run folder
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    [adapter] = sorted(folder.rglob("adapter_model.safetensors"), key=lambda p: int(p.parent.name[5:]))[-1:]
    return folder, [row["loss"] for row in rows], load_file(adapter)


def same_adapter(one: dict, other: dict) -> None:
    assert one.keys() == other.keys()
    for name, weight in one.items():
        assert other[name].dtype == weight.dtype and other[name].shape == weight.shape, name
        assert (other[name] - weight).abs().max() < 1e-5, name


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> dict:
    """One process's run of each engine, the reference every sharded run is held to."""
    made: dict = {}

    def reference(engine: str) -> tuple[list[float], dict]:
        if engine not in made:
            tmp = tmp_path_factory.mktemp(f"alone-{engine}")
            path, out = write_config(tmp, "alone", engine=engine)
            run(ONE, path)
            made[engine] = results(out)[1:]
        return made[engine]

    return reference  # type: ignore[return-value]


@pytest.mark.parametrize("engine", ["transformers", "fast"])
def test_two_sharded_ranks_train_as_one_process_does(tmp_path, alone, engine):
    # Both engines; 'fast' runs its CPU kernels here (its GPU kernels, flash attention and grouped
    # GEMMs, wait for a machine with GPUs). Each conversation
    # fills a packed micro-batch of its own, so the fast engine's ranks pad too.
    losses_alone, adapter_alone = alone(engine)
    path, out = write_config(tmp_path, "sharded", sharding="fsdp", engine=engine)
    done = run(TWO_RANKS, path)
    assert "completed at step 3" in done.stdout
    folder, sharded, adapter_sharded = results(out)

    assert len(losses_alone) == 3
    assert sharded == pytest.approx(losses_alone, rel=1e-5)
    same_adapter(adapter_alone, adapter_sharded)
    # The optimizer state is written whole, in a one-process run's layout.
    state = torch.load(next(folder.rglob("optimizer.pt")), weights_only=True)
    assert all(not hasattr(v, "device_mesh") for s in state["state"].values() for v in s.values())
    assert (folder / "checkpoints" / "step-3" / "adapter_config.json").is_file()


def test_a_run_stopped_on_sharded_ranks_resumes_in_one_process(tmp_path, alone):
    losses_alone, adapter_alone = alone("transformers")
    path, out = write_config(tmp_path, "stopped", sharding="fsdp", engine="transformers", max_steps=2, save_steps=1)
    run(TWO_RANKS, path)
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    config = yaml.safe_load(path.read_text())
    config["training"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = run(ONE, path, "--resume-from", str(folder / "checkpoints" / "step-1"))
    assert "completed at step 3" in done.stdout
    _, losses, adapter = results(out)
    assert losses == pytest.approx(losses_alone, rel=1e-5)
    same_adapter(adapter_alone, adapter)


def test_a_run_stopped_in_one_process_resumes_on_sharded_ranks(tmp_path, alone):
    losses_alone, adapter_alone = alone("transformers")
    path, out = write_config(tmp_path, "resumed", engine="transformers", max_steps=1, save_steps=1)
    run(ONE, path)
    [folder] = [p for p in out.iterdir() if p.is_dir()]
    config = yaml.safe_load(path.read_text())
    config["training"].update(max_steps=3, sharding="fsdp")
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    run(TWO_RANKS, path, "--resume-from", str(folder / "checkpoints" / "step-1"))
    _, losses, adapter = results(out)
    assert losses == pytest.approx(losses_alone, rel=1e-5)
    same_adapter(adapter_alone, adapter)


# -- what is chosen -----------------------------------------------------------------------------------


def never_asked() -> tuple[bool | None, str]:
    raise AssertionError("the planner is asked only for 'auto' on several ranks")


def test_sharding_is_chosen_as_asked_and_said_in_one_line():
    assert sharding.choose("replicate", ranks=4, torchrun=True, replica_fits=never_asked) == ("replicate", "")
    chosen, line = sharding.choose("fsdp", ranks=4, torchrun=True, replica_fits=never_asked)
    assert chosen == "fsdp" and "over 4 ranks" in line
    chosen, line = sharding.choose("fsdp", ranks=1, torchrun=False, replica_fits=never_asked)
    assert chosen == "replicate" and "nothing is sharded" in line
    chosen, line = sharding.choose(
        "auto", ranks=4, torchrun=True, replica_fits=lambda: (False, "needs 230 GiB of 79 GiB")
    )
    assert chosen == "fsdp" and "does not fit one GPU (needs 230 GiB of 79 GiB)" in line
    assert sharding.choose("auto", ranks=4, torchrun=True, replica_fits=lambda: (True, ""))[0] == "replicate"
    assert sharding.choose("auto", ranks=4, torchrun=True, replica_fits=lambda: (None, "CPU"))[0] == "replicate"
    with pytest.raises(sharding.ShardingError, match="training.sharding: fsdp shards over ranks started by torchrun"):
        sharding.choose("fsdp", ranks=2, torchrun=False, replica_fits=never_asked)


# -- the plan per GPU ----------------------------------------------------------------------------------

GPU_80GB = 79 * 2**30  # what an H100 80GB leaves torch


def plan_120b(sharding_mode: str, ranks: int):
    return memory.plan(
        {"name_or_path": "openai/gpt-oss-120b"},
        {"r": 8, "target_experts": True},
        {"engine": "fast", "sharding": sharding_mode, "optimizer": "adamw_torch"},
        data_config={"max_seq_length": 1024},
        free_bytes=GPU_80GB,
        ranks=ranks,
    )


def test_gpt_oss_120b_with_expert_lora_fits_four_80gb_gpus_only_sharded():
    replica = plan_120b("replicate", 4)
    sharded = plan_120b("fsdp", 4)
    assert replica.fits is False
    assert replica.weights_bytes > 200 * 2**30  # the bf16 base: no GPU of 80 GB holds it
    assert sharded.fits is True
    # Each GPU holds a quarter of the base and of the adapter's training state, plus gathered weights.
    assert sharded.part("weights") == pytest.approx(replica.part("weights") / 4, rel=0.01)
    assert sharded.part("optimizer states") == pytest.approx(replica.part("optimizer states") / 4, rel=0.01)
    assert sharded.part("gathered weights") > 0
    assert sharded.peak_bytes < replica.peak_bytes / 3
    assert "fsdp" in sharded.setting_words() and "4 ranks" in sharded.setting_words()


def test_auto_shards_where_a_replica_does_not_fit_and_replicates_where_it_does():
    auto = plan_120b("auto", 4)
    assert auto.settings["sharding"] == "fsdp"
    assert any("a whole replica does not fit" in note for note in auto.notes)
    small = memory.plan({"name_or_path": "openai/gpt-oss-20b"}, {}, {"sharding": "auto"}, free_bytes=GPU_80GB, ranks=4)
    assert small.settings["sharding"] == "replicate"
    one = plan_120b("fsdp", 1)
    assert one.settings["sharding"] == "replicate"  # one process has nothing to shard over
