"""Data-parallel training (``training.gpus``): the kernel trains as rank 0 and starts one worker process
per other GPU. On a CPU model the workers are CPU processes, which is how these tests run the real thing:
real processes, real torch.distributed (gloo on loopback), the real model and adapter.

What a user may rely on:
- two replicas train the same adapter as one process does (same losses, same weights);
- a worker that cannot load, or dies mid-run, fails the run with its own last log lines, and the
  kernel's session stays usable;
- Stop in the notebook stops every replica at the same step, with a checkpoint that resumes.
"""

from __future__ import annotations

import json
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from oss_finetune.core import config as config_module
from oss_finetune.core import schema
from oss_finetune.modeling import engine
from oss_finetune.notebook.session import Session
from oss_finetune.training import parallel
from oss_finetune.training.trainer import TrainingError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 3


@dataclass
class Sample:
    input_ids: list
    trained: list


def sample(length: int, trained_from: int = 1) -> Sample:
    return Sample(list(range(length)), [i >= trained_from for i in range(length)])


# -- sharing a step ------------------------------------------------------------------------------
def test_each_sample_goes_to_one_replica_with_about_equal_tokens_each():
    samples = [sample(n) for n in (50, 300, 120, 80, 260, 40, 90, 200)]
    shares = parallel.split_for_ranks(samples, 3)
    assert sorted(id(s) for share in shares for s in share) == sorted(id(s) for s in samples)
    loads = [sum(len(s.input_ids) for s in share) for share in shares]
    assert max(loads) - min(loads) <= max(len(s.input_ids) for s in samples)
    # Within a share, the step's order is kept, and every rank computes the same split.
    for share in shares:
        positions = [samples.index(s) for s in share]
        assert positions == sorted(positions)
    assert parallel.split_for_ranks(samples, 3) == shares


def test_more_replicas_than_samples_leaves_some_without_work():
    shares = parallel.split_for_ranks([sample(10), sample(20)], 4)
    assert [len(share) for share in shares] == [1, 1, 0, 0]


def test_trained_tokens_are_counted_as_the_fast_engine_counts_them():
    samples = [sample(12, trained_from=5), sample(7, trained_from=0), sample(9, trained_from=9)]
    # A conversation's first token is never a target, so a mask on from 0 counts one fewer.
    assert [parallel.targets_in(s) for s in samples] == [7, 6, 0]
    assert sum(b.trained for b in engine.pack(samples, 64)) == sum(parallel.targets_in(s) for s in samples)


def test_the_job_with_the_join_secret_is_readable_by_its_owner_only(tmp_path, monkeypatch):
    seen = {}

    def no_workers(*args, **kwargs):
        job = tmp_path / "run" / "workers" / "job.json"
        seen["mode"] = job.stat().st_mode & 0o777
        seen["secret"] = json.loads(job.read_text())["secret"]
        raise OSError("no process today")

    monkeypatch.setattr(parallel.subprocess, "Popen", no_workers)
    config = config_module.with_defaults({"training": {"gpus": 2}})
    with pytest.raises(OSError):
        parallel.start_team(config, [sample(4)], run_id="r", run_dir=tmp_path / "run", device=torch.device("cpu"))
    assert seen["mode"] == 0o600 and len(seen["secret"]) == 32
    assert not (tmp_path / "run" / "workers" / "job.json").exists()  # cleaned up on the way out


def test_examples_reach_the_workers_token_for_token(tmp_path):
    samples = [sample(5, 2), sample(3, 0)]
    parallel.write_examples(samples, tmp_path / "examples.pt")
    back = parallel.read_examples(tmp_path / "examples.pt")
    assert [(e.input_ids, e.trained) for e in back] == [(s.input_ids, s.trained) for s in samples]


def test_asking_for_more_gpus_than_there_are_names_the_field():
    if torch.cuda.device_count() >= 64:
        pytest.skip("this machine has 64 GPUs")
    with pytest.raises(parallel.TeamError, match="training.gpus is 64"):
        parallel.worker_devices(torch.device("cuda", 0), 64)


class OneRankTeam:
    """A team of one whose sum is the identity: the buffer's bookkeeping, without processes."""

    rank, world, is_leader = 0, 1, True

    def sum_(self, tensor):
        return tensor


def test_a_parameter_no_replica_touched_keeps_no_gradient(tmp_path):
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
    trainer._stop.set()  # the notebook's stop counts only once it went through a sum
    assert trainer._stop_agreed() is False
    trainer._sum_over_team(params, 0.0, 0, torch.device("cpu"))
    assert trainer._stop_agreed() is True


# -- real runs -----------------------------------------------------------------------------------
def make_session(tmp_path: Path, gpus: int, **training) -> Session:
    session = Session()
    session.set_config(
        {
            "model": {"name_or_path": "embedded:tiny"},
            "data": {"limit": 12, "max_seq_length": 192},
            "lora": {"r": 4, "alpha": 8},
            "training": {
                "max_steps": STEPS,
                "batch_size": 2,
                "gradient_accumulation_steps": 3,
                "logging_steps": 1,
                "save_steps": 100,
                "output_dir": str(tmp_path),
                "gpus": gpus,
                **training,
            },
        }
    )
    session.load({})
    return session


def adapter_of(session: Session) -> dict:
    return {n: p.detach().clone() for n, p in session.model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    """The same run in one process and in two."""
    runs = {}
    for gpus in (1, 2):
        session = make_session(tmp_path_factory.mktemp(f"gpus{gpus}"), gpus)
        updates = []
        result = session.train(on_update=updates.append)
        runs[gpus] = (session, result, updates)
    return runs


def test_two_replicas_train_the_same_adapter_as_one_process(one_and_two):
    (_, one, _), (_, two, _) = one_and_two[1], one_and_two[2]
    assert one.status == two.status == "completed"
    assert [m.loss for m in two.metrics] == pytest.approx([m.loss for m in one.metrics], rel=1e-5)
    first, second = adapter_of(one_and_two[1][0]), adapter_of(one_and_two[2][0])
    assert first.keys() == second.keys()
    for name in first:
        torch.testing.assert_close(second[name], first[name], rtol=1e-4, atol=1e-6, msg=name)
    # The step's tokens are those of both replicas.
    assert [m.tokens_per_second is not None for m in two.metrics] == [True] * STEPS


def test_only_the_kernel_writes_the_run_and_the_worker_finished_the_same_steps(one_and_two):
    session, result, updates = one_and_two[2]
    run_dir = Path(result.run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # one writer: no step twice
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step-{STEPS}"]
    log = (run_dir / "workers" / "rank-1.log").read_text()
    assert f"worker 1: completed at step {STEPS}" in log
    # The job file carried the run's join secret and the examples; both are gone with the workers.
    assert sorted(p.name for p in (run_dir / "workers").iterdir()) == ["rank-1.log"]
    # The dashboard says where the run trains; the payload stays valid.
    last = schema.validate("training-run", updates[-1])
    assert last["device"] == "cpu + 1 more CPU process, data parallel"
    assert any("starting 1 worker" in (u.get("message") or "") for u in updates)
    assert session.trainer.team is None  # the workers are gone with the run


def test_a_worker_that_cannot_load_fails_the_run_with_its_log(tmp_path):
    session = make_session(tmp_path / "runs", 2)
    folder = tmp_path / "model"
    session.loaded.model.save_pretrained(folder)
    session.loaded.tokenizer.save_pretrained(folder)
    session.load({"name_or_path": str(folder)})
    session.data()
    shutil.rmtree(folder)  # the kernel has its copy; a worker loading now finds nothing
    with pytest.raises(TrainingError, match=r"worker 1 \(CPU\) exited with code 1 while loading") as caught:
        session.train()
    # The worker's own last word reaches the notebook, with where to read the rest.
    assert f"ModelLoadError: the model folder {folder} does not exist" in str(caught.value)
    assert "rank-1.log" in str(caught.value)
    assert session.trainer.status == "failed"
    # The kernel's session goes on: the same run in one process works.
    assert session.train({"gpus": 1, "max_steps": 1}).status == "completed"


def test_a_worker_that_dies_mid_run_fails_it_and_the_checkpoint_resumes_on_two(tmp_path):
    session = make_session(tmp_path, 2, max_steps=6, save_steps=1)

    def kill_worker_after_step_2(payload):
        if payload["status"] == "running" and payload["step"] == 2:
            session.trainer.team._workers[0].process.kill()

    with pytest.raises(TrainingError, match=r"worker 1 \(CPU\) exited with code -9 during training"):
        session.train(on_update=kill_worker_after_step_2)
    assert session.trainer.status == "failed"
    assert session.trainer.step >= 2
    resumed = session.train(resume_from="latest")
    assert resumed.status == "completed" and resumed.step == 6
    assert [m.step for m in resumed.metrics] == list(range(1, 7))


def test_stop_in_the_notebook_stops_every_replica_at_the_same_step(tmp_path):
    session = make_session(tmp_path, 2, max_steps=40)
    stopped_at = threading.Event()

    def stop_after_first_step(payload):
        if payload["status"] == "running" and payload["step"] >= 1 and not stopped_at.is_set():
            stopped_at.set()
            session.stop()

    result = session.train(on_update=stop_after_first_step)
    assert result.status == "stopped" and result.step < 40
    run_dir = Path(result.run_dir)
    assert (run_dir / "checkpoints" / f"step-{result.step}" / "adapter_model.safetensors").is_file()
    assert f"worker 1: stopped at step {result.step}" in (run_dir / "workers" / "rank-1.log").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_the_same_adapter_as_one(tmp_path):
    """On GPUs the fast engine packs each replica's share on its own, in bf16: the same run within bf16's
    rounding, and the worker's GPU is the second one."""
    results = {}
    for gpus in (1, 2):
        session = make_session(tmp_path / f"gpus{gpus}", gpus, max_steps=4, learning_rate=1e-3)
        assert session.loaded.device.type == "cuda"
        result = session.train()
        assert result.status == "completed"
        results[gpus] = (result, adapter_of(session))
    (one, first), (two, second) = results[1], results[2]
    assert [m.loss for m in two.metrics] == pytest.approx([m.loss for m in one.metrics], rel=2e-2)
    for name in first:
        drift = (second[name].float() - first[name].float()).abs().max()
        assert drift <= 0.05 * first[name].float().abs().max() + 1e-3, name
    log = (Path(two.run_dir) / "workers" / "rank-1.log").read_text()
    assert "worker 1: cuda:0" in log  # cuda:0 of its own CUDA_VISIBLE_DEVICES, the second GPU
    assert "completed at step 4" in log


def test_the_train_magic_takes_gpus_and_says_where_it_trains(shell, capsys, tmp_path):
    from oss_finetune.notebook import session as session_module

    session_module.reset_session({"training": {"output_dir": str(tmp_path)}, "data": {"limit": 8}})
    assert shell.run_cell("%oss_finetune load embedded:tiny").success
    result = shell.run_cell(
        "%oss_finetune train --gpus 2 --max-steps 1 --batch-size 2 --gradient-accumulation-steps 2 --save-steps 100"
    )
    out, err = capsys.readouterr()
    assert result.success, err
    assert "completed: completed 1 step;" in out
    assert "cpu + 1 more CPU process, data parallel" in out
    run = session_module.get_session().last_result
    assert "worker 1: completed at step 1" in (Path(run.run_dir) / "workers" / "rank-1.log").read_text()


def test_the_memory_plan_says_it_is_each_gpus_own():
    plan = Session().memory_plan({"model": {"name_or_path": "embedded:gpt-oss-20b-random"}, "training": {"gpus": 2}})
    assert any("each GPU's plan: all 2 GPUs hold a whole replica" in note for note in plan.notes)
    assert "each GPU's plan" in plan.text()
    assert not any("replica" in note for note in Session().memory_plan().notes)
