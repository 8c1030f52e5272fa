"""Data-parallel training on several GPUs of one host.

The kernel stays where the notebook's model, adapter and dashboard live: it trains on its own GPU as
rank 0. Each other GPU gets a worker process (``python -m oss_finetune.worker``) that loads the same
model and adapter from the run's config, reads the kernel's tokenized examples (so every rank trains on
the very token ids the notebook showed), and trains a replica on its share of every optimizer step.
Once per step the adapter's gradients, the loss and the stop flag are summed across the team with
torch.distributed's gloo backend, so every replica takes the same optimizer step and the adapter in the
kernel is the one that trained.

Why not torchrun or DDP: a LoRA adapter's gradients are a few megabytes, so one summed buffer per step
costs milliseconds, while launching the whole run outside the kernel would leave the notebook's model
idle and its dashboard blind. Why gloo rather than NCCL: a worker that dies makes gloo raise in the
kernel at once, where NCCL's watchdog would abort the process that holds the notebook.

Everything listens on loopback only: the rendezvous store on a socket bound to 127.0.0.1, gloo on the
loopback device, and a worker joins only with the run's one-time secret.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch

from ..core.data import Example
from ..core.errors import UserError

# A step on a large model with its first compile takes minutes; a dead worker is seen at once anyway.
STEP_TIMEOUT = timedelta(minutes=30)
JOIN_POLL_SECONDS = 0.2
FAILED_LINE = "worker {rank} failed: "


class TeamError(UserError, RuntimeError):
    """A worker could not start or stopped answering; the message says which and why."""


class TeamStopped(TeamError):
    """The notebook asked to stop while the workers were still loading."""


def targets_in(example) -> int:
    """The trained tokens of one conversation: every position whose next token is trained."""
    return int(sum(bool(t) for t in example.trained[1:]))


def split_for_ranks(samples: Sequence, world: int) -> list[list]:
    """Share one optimizer step's samples among ``world`` replicas with about equal tokens each.

    Longest first to the least loaded (lowest rank on a tie), then each share back in the step's order:
    every rank computes the same split from the same samples, so no one has to send it.
    """
    loads = [0] * world
    owner = [0] * len(samples)
    for index in sorted(range(len(samples)), key=lambda i: (-len(samples[i].input_ids), i)):
        rank = min(range(world), key=lambda r: (loads[r], r))
        owner[index] = rank
        loads[rank] += len(samples[index].input_ids)
    return [[s for i, s in enumerate(samples) if owner[i] == rank] for rank in range(world)]


def write_examples(examples: Sequence, path: Path) -> None:
    """The kernel's training examples as three flat tensors, for the workers."""
    lengths = torch.tensor([len(e.input_ids) for e in examples], dtype=torch.long)
    ids = torch.tensor([t for e in examples for t in e.input_ids], dtype=torch.long)
    trained = torch.tensor([bool(t) for e in examples for t in e.trained], dtype=torch.bool)
    tmp = path.with_suffix(".tmp")
    torch.save({"lengths": lengths, "input_ids": ids, "trained": trained}, tmp)
    os.replace(tmp, path)


def read_examples(path: Path) -> list[Example]:
    saved = torch.load(path, weights_only=True)
    ids, trained = saved["input_ids"].tolist(), saved["trained"].tolist()
    examples, start = [], 0
    for length in saved["lengths"].tolist():
        examples.append(Example(ids[start : start + length], trained[start : start + length]))
        start += length
    return examples


def visible_gpus() -> list[str]:
    """The physical GPU ids this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def worker_devices(device: torch.device, gpus: int) -> list[str | None]:
    """What each worker's CUDA_VISIBLE_DEVICES is set to: the GPUs other than the kernel's, in order.
    On a CPU model the workers are CPU processes too (None), which is how the tests run."""
    if device.type != "cuda":
        return [None] * (gpus - 1)
    visible = visible_gpus()
    mine = device.index if device.index is not None else torch.cuda.current_device()
    others: list[str | None] = [g for i, g in enumerate(visible) if i != mine]
    if len(others) < gpus - 1:
        raise TeamError(
            f"training.gpus is {gpus}, but this process sees {len(visible)} GPU"
            f"{'' if len(visible) == 1 else 's'}; set gpus to {len(visible)} or fewer"
        )
    return others[: gpus - 1]


def _gloo(store, rank: int, world: int):
    import torch.distributed as dist

    options = dist.ProcessGroupGloo._Options()  # type: ignore[attr-defined]  # private, absent from torch's stubs
    options._timeout = STEP_TIMEOUT
    options._devices = [dist.ProcessGroupGloo.create_device(hostname="127.0.0.1")]
    return dist.ProcessGroupGloo(store, rank, world, options)


class Team:
    """This process's place in a data-parallel run: ``rank`` of ``world``, and the sums between them."""

    def __init__(
        self, rank: int, world: int, group, store, workers: list | None = None, job_files: Sequence[Path] = ()
    ):
        self.rank = rank
        self.world = world
        self._group = group
        self._store = store
        self._workers = workers or []  # rank 0 only: the Worker records
        self._job_files = list(job_files)  # rank 0 only: the job and examples the workers read

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a CPU float tensor over the team, in place."""
        try:
            self._group.allreduce([tensor]).wait()
        except RuntimeError as error:
            raise TeamError(self.describe_failure(error)) from error
        return tensor

    def share_from_leader_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Overwrite a CPU tensor with rank 0's copy, in place."""
        try:
            self._group.broadcast(tensor, 0).wait()
        except RuntimeError as error:
            raise TeamError(self.describe_failure(error)) from error
        return tensor

    def describe_failure(self, error: BaseException) -> str:
        if not self.is_leader:
            return f"the notebook's kernel (rank 0) stopped answering: {error}"
        # Give a crashed worker a moment to be reaped, so that its exit and last lines can be shown.
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and all(w.process.poll() is None for w in self._workers):
            time.sleep(0.05)
        for worker in self._workers:
            if worker.process.poll() is not None:
                return worker.failure("during training")
        return f"a worker stopped answering: {error}"

    def close(self) -> None:
        """End the workers (a no-op for a worker's own Team) and drop the connections."""
        for worker in self._workers:
            worker.end()
        # The job holds the run's join secret and the examples can be large; the logs stay.
        for path in self._job_files:
            path.unlink(missing_ok=True)
        self._group = None
        self._store = None


class Worker:
    """Rank 0's record of one worker process."""

    def __init__(self, rank: int, gpu: str | None, process: subprocess.Popen, log_path: Path):
        self.rank = rank
        self.gpu = gpu
        self.process = process
        self.log_path = log_path

    @property
    def where(self) -> str:
        return f"worker {self.rank} (GPU {self.gpu})" if self.gpu is not None else f"worker {self.rank} (CPU)"

    def tail(self, lines: int = 12) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(deque(handle, maxlen=lines)).rstrip()
        except OSError:
            return ""

    def failure(self, when: str) -> str:
        code = self.process.poll()
        head = f"{self.where} exited with code {code} {when}" if code is not None else f"{self.where} failed {when}"
        tail = self.tail()
        said = FAILED_LINE.format(rank=self.rank)
        lines = tail.splitlines()
        if lines and lines[-1].startswith(said):
            return f"{head}: {lines[-1][len(said) :]} (the whole story is in {self.log_path})"
        return f"{head}; its log is {self.log_path}" + (f", ending:\n{tail}" if tail else "")

    def end(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_team(
    config: dict,
    examples: Sequence,
    *,
    run_id: str,
    run_dir: Path,
    device: torch.device,
    resume_from: str | None = None,
    on_progress: Callable[[str], Any] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    join_timeout: float = 3600.0,
) -> Team:
    """Rank 0, in the kernel: start one worker per extra GPU with the run's config, wait until each has
    loaded its replica, and form the team. Raises TeamError with the worker's last log lines when one
    fails on the way."""
    import torch.distributed as dist

    gpus = int(config["training"].get("gpus") or 1)
    devices = worker_devices(device, gpus)
    logs = Path(run_dir) / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(16)
    write_examples(examples, logs / "examples.pt")
    job = {
        "config": config,
        "run_id": run_id,
        "resume_from": resume_from,
        "world": gpus,
        "secret": secret,
        "examples": str(logs / "examples.pt"),
    }
    job_path = logs / "job.json"
    job_path.write_text(json.dumps(job, indent=2), encoding="utf-8")
    job_path.chmod(0o600)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    # The store owns the socket from here on (closing it under the store would abort this process).
    store = dist.TCPStore(
        "127.0.0.1",
        port,
        gpus,
        True,
        timedelta(seconds=join_timeout),
        wait_for_workers=False,
        master_listen_fd=listener.detach(),
        use_libuv=False,
    )

    workers: list[Worker] = []
    try:
        for rank, gpu in enumerate(devices, start=1):
            env = dict(os.environ)
            if gpu is not None:
                env["CUDA_VISIBLE_DEVICES"] = gpu
            else:
                # CPU replicas share the cores instead of each taking all of them.
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // gpus))
            env["PYTHONUNBUFFERED"] = "1"
            log_path = logs / f"rank-{rank}.log"
            with open(log_path, "w", encoding="utf-8") as log:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "oss_finetune.worker",
                        "--rank",
                        str(rank),
                        "--port",
                        str(port),
                        "--job",
                        str(job_path),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # a Ctrl-C in the notebook is for the kernel, not the workers
                )
            workers.append(Worker(rank, gpu, process, log_path))
        if on_progress is not None:
            places = ", ".join(w.where for w in workers)
            on_progress(
                f"starting {len(workers)} worker{'s' if len(workers) > 1 else ''} for data-parallel "
                f"training ({places}); each loads the model"
            )
        deadline = time.monotonic() + join_timeout
        waiting = {w.rank: w for w in workers}
        while waiting:
            if stop_requested is not None and stop_requested():
                raise TeamStopped("stopped while the workers were loading; nothing was trained")
            for rank, worker in list(waiting.items()):
                if store.check([f"ready/{rank}"]):
                    if store.get(f"ready/{rank}").decode() != secret:
                        raise TeamError(f"rank {rank} joined without this run's secret; not training")
                    del waiting[rank]
                elif worker.process.poll() is not None:
                    raise TeamError(worker.failure("while loading"))
            if waiting and time.monotonic() > deadline:
                raise TeamError(f"{len(waiting)} worker(s) did not load within {join_timeout:.0f} s")
            if waiting:
                time.sleep(JOIN_POLL_SECONDS)
        store.set("go", secret)
        group = _gloo(store, 0, gpus)
    except BaseException:
        for worker in workers:
            worker.end()
        for path in (job_path, logs / "examples.pt"):
            path.unlink(missing_ok=True)
        raise
    return Team(0, gpus, group, store, workers, job_files=(job_path, logs / "examples.pt"))


def join_team(rank: int, world: int, port: int, secret: str) -> Team:
    """A worker, after loading: say so, wait for the go, and form the team."""
    import torch.distributed as dist

    store = dist.TCPStore("127.0.0.1", port, world, False, STEP_TIMEOUT)
    store.set(f"ready/{rank}", secret)
    store.wait(["go"])
    if store.get("go").decode() != secret:
        raise TeamError("the kernel's store answered with another run's secret")
    return Team(rank, world, _gloo(store, rank, world), store)
