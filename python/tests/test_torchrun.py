"""Training launched by torchrun (``python -m oss_finetune train CONFIG``), read as a manual: one process
trains as the config says; ``torchrun --nproc-per-node 2`` starts two ranks that share every step over
gloo (NCCL on GPUs) and end with the same losses and adapter as the one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from oss_finetune.training.distributed import split_for_ranks, targets_in

CONFIG = {
    "model": {"name_or_path": "embedded:tiny"},
    "data": {"limit": 12, "max_seq_length": 192},
    "lora": {"r": 4, "alpha": 8},
    "training": {
        "max_steps": 3,
        "batch_size": 2,
        "gradient_accumulation_steps": 3,
        "logging_steps": 1,
        "save_steps": 100,
        "learning_rate": 1e-3,
    },
}


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def write_config(tmp_path: Path, name: str) -> tuple[Path, Path]:
    out = tmp_path / name
    config = {**CONFIG, "training": {**CONFIG["training"], "output_dir": str(out)}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path, out


def finished(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def run_results(out: Path) -> tuple[list[float], dict]:
    [run] = [p for p in out.iterdir() if p.is_dir()]  # rank 0 alone writes the run folder
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    [adapter] = list(run.rglob("adapter_model.safetensors"))[-1:]
    return losses, load_file(adapter)


def train(tmp_path: Path, ranks: int) -> tuple[list[float], dict]:
    path, out = write_config(tmp_path, f"ranks{ranks}")
    launcher = [sys.executable, "-m", "oss_finetune"]
    if ranks > 1:
        launcher = [*TORCHRUN, "--nproc-per-node", str(ranks), "-m", "oss_finetune"]
    done = subprocess.run([*launcher, "train", str(path)], env=ENV, capture_output=True, text=True, timeout=600)
    finished(done)
    assert "completed at step 3" in done.stdout
    return run_results(out)


@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_under_torchrun_train_as_one_process_does(tmp_path, ranks):
    """Each optimizer step's 6 samples are shared 3 + 3 or 2 + 2 + 2; the step is the same."""
    alone, adapter_alone = train(tmp_path, 1)
    together, adapter_together = train(tmp_path, ranks)
    assert len(alone) == 3
    assert together == pytest.approx(alone, rel=1e-5)
    assert adapter_together.keys() == adapter_alone.keys()
    for name, weight in adapter_alone.items():
        assert (adapter_together[name] - weight).abs().max() < 1e-6, name


def test_two_machines_stand_in_as_two_launchers_on_loopback(tmp_path):
    """What `torchrun --nnodes 2 --node-rank K --master-addr HOST` does on each of two machines."""
    alone, _ = train(tmp_path, 1)
    path, out = write_config(tmp_path, "nodes2")
    nodes = [
        subprocess.Popen(
            [
                *TORCHRUN,
                "--nnodes",
                "2",
                "--node-rank",
                str(rank),
                "--nproc-per-node",
                "1",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                "29517",
                "-m",
                "oss_finetune",
                "train",
                str(path),
            ],
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    for node in nodes:
        stdout, stderr = node.communicate(timeout=600)
        assert node.returncode == 0, stdout[-2000:] + stderr[-4000:]
    losses, _ = run_results(out)
    assert losses == pytest.approx(alone, rel=1e-5)


def test_a_config_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("- just\n- a list\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "oss_finetune", "train", str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "must hold a mapping of sections" in done.stderr


def test_a_run_stopped_alone_resumes_on_two_ranks_where_it_left_off(tmp_path):
    alone, _ = train(tmp_path, 1)
    path, out = write_config(tmp_path, "resumed")
    config = yaml.safe_load(path.read_text())
    config["training"].update(max_steps=2, save_steps=1)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    finished(
        subprocess.run(
            [sys.executable, "-m", "oss_finetune", "train", str(path)],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=600,
        )
    )
    [run] = [p for p in out.iterdir() if p.is_dir()]
    config["training"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run(
        [
            *TORCHRUN,
            "--nproc-per-node",
            "2",
            "-m",
            "oss_finetune",
            "train",
            str(path),
            "--resume-from",
            str(run / "checkpoints" / "step-2"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    finished(done)
    assert "completed at step 3" in done.stdout
    losses, _ = run_results(out)
    assert losses[-1] == pytest.approx(alone[-1], rel=1e-5)


def test_ranks_that_cannot_start_end_the_job_with_their_reason(tmp_path):
    path, _ = write_config(tmp_path, "broken")
    config = yaml.safe_load(path.read_text())
    config["model"]["name_or_path"] = "embedded:no-such-model"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    done = subprocess.run(
        [*TORCHRUN, "--nproc-per-node", "2", "-m", "oss_finetune", "train", str(path)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "error: " in done.stderr and "no-such-model" in done.stderr


# -- how the ranks share a step (no processes) ----------------------------------------------------
@dataclass
class Sample:
    input_ids: list
    trained: list


def sample(length: int, trained_from: int = 1) -> Sample:
    return Sample(list(range(length)), [i >= trained_from for i in range(length)])


def test_each_sample_goes_to_one_rank_with_about_equal_tokens_each():
    samples = [sample(n) for n in (50, 300, 120, 80, 260, 40, 90, 200)]
    shares = split_for_ranks(samples, 3)
    assert sorted(id(s) for share in shares for s in share) == sorted(id(s) for s in samples)
    loads = [sum(len(s.input_ids) for s in share) for share in shares]
    assert max(loads) - min(loads) <= max(len(s.input_ids) for s in samples)
    # Within a share, the step's order is kept, and every rank computes the same split.
    for share in shares:
        positions = [samples.index(s) for s in share]
        assert positions == sorted(positions)
    assert split_for_ranks(samples, 3) == shares


def test_more_ranks_than_samples_leaves_some_without_work():
    shares = split_for_ranks([sample(10), sample(20)], 4)
    assert [len(share) for share in shares] == [1, 1, 0, 0]


def test_trained_tokens_are_counted_as_the_fast_engine_counts_them():
    from oss_finetune.modeling import engine

    samples = [sample(12, trained_from=5), sample(7, trained_from=0), sample(9, trained_from=9)]
    # A conversation's first token is never a target, so a mask on from 0 counts one fewer.
    assert [targets_in(s) for s in samples] == [7, 6, 0]
    assert sum(b.trained for b in engine.pack(samples, 64)) == sum(targets_in(s) for s in samples)


class OneRankTeam:
    """A team of one whose sum is the identity: the step buffer's bookkeeping, without processes."""

    rank, world, is_leader = 0, 1, True

    def sum_(self, tensor):
        return tensor


def test_a_parameter_no_rank_touched_keeps_no_gradient(tmp_path):
    import torch

    from oss_finetune.training.trainer import Trainer, TrainingExample

    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 2))
    trainer = Trainer(
        model, [TrainingExample([1, 2], [False, True])], {"output_dir": str(tmp_path)}, team=OneRankTeam()
    )
    params = list(model.parameters())
    for p in params[:2]:
        p.grad = torch.full_like(p, 0.5)
    loss, tokens = trainer._sum_over_team(params, 3.0, 7, torch.device("cpu"))
    assert (loss, tokens) == (3.0, 7)
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in params[:2])
    assert params[2].grad is None and params[3].grad is None  # the optimizer skips them, as in one process
    assert trainer._stop_agreed() is False
    trainer._stop.set()  # a stop counts only once it went through a sum, so that every rank sees it
    assert trainer._stop_agreed() is False
    trainer._sum_over_team(params, 0.0, 0, torch.device("cpu"))
    assert trainer._stop_agreed() is True


def test_the_memory_plan_says_it_is_each_gpus_own():
    from oss_finetune.notebook.session import Session

    plan = Session().memory_plan({"model": {"name_or_path": "embedded:gpt-oss-20b-random"}, "training": {"gpus": 2}})
    assert any("each GPU's plan: all 2 GPUs hold a whole replica" in note for note in plan.notes)
    assert "each GPU's plan" in plan.text()
    assert not any("replica" in note for note in Session().memory_plan().notes)
