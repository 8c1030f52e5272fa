"""``%oss_finetune train --gpus N`` (``training.gpus``): the notebook launches the torchrun job a person
would run from a shell and follows its run folder. On a CPU model the ranks are CPU processes over gloo,
which is how these tests run the real thing: real torchrun, real processes, the real model and adapter.

What a user may rely on:
- N ranks train the adapter one process trains (same losses), and it comes back into the notebook's
  model, said in one line;
- Stop stops every rank at one step boundary with a checkpoint, which resumes on any number of ranks
  (the kernel alone included) with the losses of a run never stopped;
- a rank that cannot start, or dies, ends the run with its last line and its log; no process of the job
  is left, and the kernel trains again.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import psutil
import pytest
import torch

from oss_finetune.notebook import session as session_module
from oss_finetune.notebook.session import Session, SessionError
from oss_finetune.training import job as jobs
from oss_finetune.training.distributed import JobGpus, job_gpus
from oss_finetune.training.trainer import TrainingError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The run the torchrun tests launch from a shell, so that the two paths are compared on one config.
from test_torchrun import CONFIG  # noqa: E402


def config(output_dir: Path, **training) -> dict:
    return {**CONFIG, "training": {**CONFIG["training"], "output_dir": str(output_dir), **training}}


def make_session(output_dir: Path, **training) -> Session:
    session = Session(config(output_dir, **training))
    session.ensure_loaded()
    return session


def adapter_of(session: Session) -> dict:
    return {n: p.detach().clone() for n, p in session.model.named_parameters() if p.requires_grad}


def no_job_left() -> list[str]:
    """The processes this test process started that are still there (torchrun or a rank)."""
    return [" ".join(c.cmdline()[:6]) for c in psutil.Process().children(recursive=True) if c.is_running()]


def rank_says(run_dir: Path, rank: int) -> str:
    [log] = sorted((run_dir / "logs").glob(f"*/attempt_*/{rank}/stdout.log"))[-1:]
    return log.read_text()


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same run trained in the kernel alone, 3 steps and 8 steps."""
    runs = {}
    for steps in (3, 8):
        session = make_session(tmp_path_factory.mktemp(f"alone{steps}"), max_steps=steps)
        result = session.train()
        runs[steps] = ([m.loss for m in result.metrics], adapter_of(session))
    return runs


# -- the decisions, without processes --------------------------------------------------------------
def test_the_job_takes_gpus_the_notebooks_model_leaves_alone_where_there_are_enough():
    four = ["0", "1", "2", "3"]
    assert job_gpus(None, 2, four) == JobGpus(None, False)  # the model is on the CPU: nothing to free
    assert job_gpus(0, 2, four) == JobGpus(["1", "2"], False)
    assert job_gpus(1, 3, four) == JobGpus(["0", "2", "3"], False)
    assert job_gpus(0, 4, four) == JobGpus(four, True)  # every GPU: the notebook's model leaves its GPU
    assert job_gpus(1, 2, ["0", "3"]) == JobGpus(["0", "3"], True)  # named as CUDA_VISIBLE_DEVICES names them
    with pytest.raises(Exception, match="training.gpus is 5, but this kernel sees 4 GPUs; set gpus to 4 or fewer"):
        job_gpus(0, 5, four)


def test_the_command_is_torchrun_on_loopback_with_a_log_per_rank(tmp_path):
    command = jobs.torchrun_command(
        tmp_path / "config.yaml", ranks=3, port=29999, log_dir=tmp_path / "logs", run_id="r1", resume_from="ck"
    )
    text = " ".join(command)
    assert "-m torch.distributed.run --nnodes 1 --nproc-per-node 3 --master-addr 127.0.0.1 --master-port 29999" in text
    assert f"--log-dir {tmp_path / 'logs'} --redirects 3 -m oss_finetune train" in text
    assert text.endswith("--run-id r1 --resume-from ck")
    env = jobs.job_environment(2, ["1", "2"], base={"PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "1,2" and env["PYTHONUNBUFFERED"] == "1"


def test_a_failure_names_the_rank_torchrun_saw_fail_first(tmp_path):
    logs = tmp_path / "logs"
    (logs / "none_x" / "attempt_0" / "1").mkdir(parents=True)
    (logs / "none_x" / "attempt_0" / "1" / "stderr.log").write_text("warming up\nValueError: broken row 7\n")
    launcher = logs / jobs.LAUNCHER_LOG
    launcher.write_text(
        "Failures:\n[1]:\n  rank      : 0 (local_rank: 0)\n  exitcode  : -15 (pid: 9)\n"
        "Root Cause (first observed failure):\n[0]:\n  rank      : 1 (local_rank: 1)\n  exitcode  : 1 (pid: 8)\n"
    )
    message = jobs.failure_message(launcher, logs, 1, 4)
    assert message == (
        "rank 1 exited with code 1 after step 4: ValueError: broken row 7 "
        f"(its log: {logs / 'none_x' / 'attempt_0' / '1' / 'stderr.log'})"
    )
    launcher.write_text("OSError: address in use\n")
    assert jobs.failure_message(launcher, logs, 1, 0).startswith(
        "torchrun exited with code 1 before the first step: OSError: address in use"
    )


# -- real jobs ----------------------------------------------------------------------------------------
def test_train_gpus_2_in_a_cell_trains_as_one_process_and_brings_the_adapter_back(shell, capsys, tmp_path, one_process):
    session_module.reset_session(config(tmp_path))
    assert shell.run_cell("%oss_finetune load embedded:tiny").success
    capsys.readouterr()
    assert shell.run_cell("%oss_finetune train --gpus 2").success
    out, err = capsys.readouterr()
    assert "completed 3 steps; adapter in" in out, out + err
    assert "loaded the adapter the ranks trained" in out
    assert "cpu + 1 more CPU process, data parallel" in out  # the dashboard, as rank 0 reported it
    session = session_module.get_session()
    result = session.last_result
    losses, adapter = one_process[3]
    assert [m.loss for m in result.metrics] == pytest.approx(losses, rel=1e-5)
    # The notebook's model now holds the adapter the ranks trained: chat and eval use it.
    mine = adapter_of(session)
    assert mine.keys() == adapter.keys()
    for name, weight in adapter.items():
        torch.testing.assert_close(mine[name], weight, rtol=1e-4, atol=1e-6, msg=name)
    run_dir = Path(result.run_dir)
    assert (run_dir / jobs.CONFIG_FILE).is_file()
    assert "rank 1: completed at step 3" in rank_says(run_dir, 1)
    assert session.status()["runs"][-1]["status"] == "completed"
    assert no_job_left() == []


def test_an_interrupt_stops_every_rank_at_one_step_and_the_kernel_alone_finishes_the_run(tmp_path, one_process):
    """Kernel > Interrupt (SIGINT to the kernel) asks for the same stop as the Stop button."""
    session = make_session(tmp_path, max_steps=8, gpus=2)
    asked = threading.Event()
    seen = []

    def interrupt_after_the_first_step(payload):
        seen.append(payload["status"])
        if payload["status"] == "running" and payload["step"] >= 1 and not asked.is_set():
            asked.set()
            signal.raise_signal(signal.SIGINT)

    result = session.train(on_update=interrupt_after_the_first_step)
    assert result.status == "stopped" and 1 <= result.step < 8, result.message
    assert result.message.startswith(f"interrupted at step {result.step} of 8; checkpoint ")
    assert "stopping" in seen
    run_dir = Path(result.run_dir)
    assert result.checkpoint == str(run_dir / "checkpoints" / f"step-{result.step}")
    # Every rank stopped at that very step, and the stop request was taken away once acted on.
    assert f"stopped at step {result.step}: " in rank_says(run_dir, 0)
    assert f"rank 1: stopped at step {result.step}" in rank_says(run_dir, 1)
    assert not (run_dir / jobs.STOP_FILE).exists()
    assert no_job_left() == []
    # The kernel alone continues the run the two ranks saved, with the losses of a run never stopped.
    resumed = session.train({"gpus": 1}, resume_from="latest")
    assert resumed.status == "completed" and resumed.step == 8
    losses, _ = one_process[8]
    assert [m.loss for m in resumed.metrics] == pytest.approx(losses, rel=1e-5)


def test_a_rank_that_dies_ends_the_run_with_its_log_and_the_kernel_trains_again(tmp_path, monkeypatch):
    session = make_session(tmp_path, max_steps=6, gpus=2)
    monkeypatch.setenv(jobs.FAULT_INJECTION_ENV, "1:2")
    with pytest.raises(TrainingError, match=r"rank 1 exited with code 3 after step \d") as caught:
        session.train()
    message = str(caught.value)
    assert "fault injected for a test: rank 1 exits after step 2" in message
    log = Path(message.rsplit("(its log: ", 1)[1].rstrip(")"))
    assert log.is_file() and log.parts[-2] == "1"
    assert session.trainer.status == "failed"
    assert no_job_left() == []
    monkeypatch.delenv(jobs.FAULT_INJECTION_ENV)
    assert session.train({"gpus": 1, "max_steps": 1}).status == "completed"


def test_ranks_that_cannot_load_end_the_run_with_their_reason(tmp_path):
    session = make_session(tmp_path / "runs", gpus=2)
    folder = tmp_path / "model"
    session.loaded.model.save_pretrained(folder)
    session.loaded.tokenizer.save_pretrained(folder)
    session.load({"name_or_path": str(folder)})
    session.data()
    os.rename(folder, tmp_path / "gone")  # the kernel has its copy; the ranks find nothing
    with pytest.raises(TrainingError, match=r"rank \d exited with code 2 before the first step: error: ") as caught:
        session.train()
    assert str(folder) in str(caught.value) and "stderr.log" in str(caught.value)
    assert no_job_left() == []


def test_a_stop_while_the_ranks_load_ends_the_job_with_nothing_trained(tmp_path):
    session = make_session(tmp_path, gpus=2)

    def stop_at_once(payload):
        if payload["status"] == "pending":
            session.stop()

    result = session.train(on_update=stop_at_once)
    assert result.status == "stopped" and result.step == 0
    assert "while the ranks were loading; nothing was trained" in result.message
    assert no_job_left() == []


def test_more_gpus_than_the_kernel_sees_is_refused_with_the_field(monkeypatch, tmp_path):
    session = make_session(tmp_path, gpus=3)
    monkeypatch.setattr(session_module, "_gpu_index", lambda device: 0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(SessionError, match="training.gpus is 3, but this kernel sees 2 GPUs") as caught:
        session.train()
    assert caught.value.path == "training.gpus"


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_the_same_adapter_as_one(tmp_path):
    """On GPUs the fast engine packs each rank's share on its own, in bf16: the same run within bf16's
    rounding. With two GPUs the job needs the notebook's, so its model waits on the host meanwhile."""
    from oss_finetune.notebook.session import reporting

    results = {}
    for gpus in (1, 2):
        session = make_session(tmp_path / f"gpus{gpus}", gpus=gpus, max_steps=4)
        assert session.loaded.device.type == "cuda"
        notes: list[str] = []
        with reporting(notes.append):
            result = session.train()
        assert result.status == "completed"
        results[gpus] = (result, adapter_of(session), notes)
    (one, first, _), (two, second, notes) = results[1], results[2]
    assert [m.loss for m in two.metrics] == pytest.approx([m.loss for m in one.metrics], rel=2e-2)
    for name in first:
        drift = (second[name].float() - first[name].float()).abs().max()
        assert drift <= 0.05 * first[name].float().abs().max() + 1e-3, name
    assert any(n.startswith("moved the notebook's model from cuda:0 to the host") for n in notes), notes
    assert any(n.startswith("moved the notebook's model back to cuda:0") for n in notes), notes
    assert next(p.device for p in session.model.parameters()).type == "cuda"
    assert "rank 1: completed at step 4" in rank_says(Path(two.run_dir), 1)
