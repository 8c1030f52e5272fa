"""Training launched by torchrun (``python -m oss_finetune train CONFIG``), read as a manual: one process
trains as the config says; ``torchrun --nproc-per-node 2`` starts two ranks that share every step over
gloo (NCCL on GPUs) and end with the same losses and adapter as the one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

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


def test_two_ranks_under_torchrun_train_as_one_process_does(tmp_path):
    alone, adapter_alone = train(tmp_path, 1)
    together, adapter_together = train(tmp_path, 2)
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
