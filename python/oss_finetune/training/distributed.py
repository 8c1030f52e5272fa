"""Training in several processes started by torchrun (``torch.distributed.run``), the way users launch
every other trainer: one process per GPU, on one machine or several.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for each process; the processes
join one torch.distributed group over NCCL on GPUs and gloo on CPUs. ``RanksTeam`` gives the Trainer
three operations: sum a buffer over the ranks, take rank 0's copy, and say who leads. So every rank
trains a replica on its share of each optimizer step and takes the same step, and rank 0 alone writes
the run folder.

Also here, for the Trainer and the notebook's launcher: how a step's samples are shared out, and which
GPUs a job started from the notebook gets.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch

from ..core.errors import UserError

# A step on a large model with its first compile takes minutes; a dead rank is seen at once anyway.
STEP_TIMEOUT = timedelta(minutes=30)


class TeamError(UserError, RuntimeError):
    """A rank could not start or stopped answering; the message says which and why."""


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


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


def visible_gpus() -> list[str]:
    """The physical GPU ids this process may use, as CUDA_VISIBLE_DEVICES would name them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


@dataclass(frozen=True)
class JobGpus:
    """Which GPUs a torchrun job started from the notebook trains on, and whether the notebook's model
    must leave its GPU meanwhile."""

    visible: list[str] | None  # CUDA_VISIBLE_DEVICES for the job; None: the kernel's own, unchanged
    free_kernel_gpu: bool


def job_gpus(kernel_gpu: int | None, gpus: int, visible: Sequence[str]) -> JobGpus:
    """``kernel_gpu``: the index (among ``visible``) of the GPU the notebook's model sits on, None when it
    is on the CPU. The job takes GPUs the notebook's model leaves alone where there are enough of them;
    else it shares the model's GPU, which the notebook then frees while the job runs."""
    if kernel_gpu is None:
        return JobGpus(None, False)
    if len(visible) < gpus:
        raise TeamError(
            f"training.gpus is {gpus}, but this kernel sees {len(visible)} GPU"
            f"{'' if len(visible) == 1 else 's'}; set gpus to {len(visible)} or fewer"
        )
    others = [g for i, g in enumerate(visible) if i != kernel_gpu]
    if len(others) >= gpus:
        return JobGpus(others[:gpus], False)
    return JobGpus(list(visible[:gpus]), kernel_gpu < gpus)


class RanksTeam:
    """This process's place in a torch.distributed group that torchrun started."""

    def __init__(self, timeout: timedelta = STEP_TIMEOUT):
        import torch.distributed as dist

        self.rank = int(os.environ["RANK"])
        self.world = int(os.environ["WORLD_SIZE"])
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.backend = "nccl" if torch.cuda.is_available() else "gloo"
        if self.backend == "nccl":
            torch.cuda.set_device(self.local_rank)
            self.device = torch.device("cuda", self.local_rank)
        else:
            self.device = torch.device("cpu")
        # A bounded timeout: a rank that hangs ends the run with an error instead of holding the others.
        dist.init_process_group(self.backend, timeout=timeout)
        self._dist = dist

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def _collective(self, tensor: torch.Tensor, op) -> torch.Tensor:
        # The Trainer hands CPU buffers; NCCL works on the GPU's copy.
        moved = tensor.to(self.device)
        try:
            op(moved)
        except RuntimeError as error:
            raise TeamError(self.describe_failure(error)) from error
        if moved is not tensor:
            tensor.copy_(moved)
        return tensor

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._collective(tensor, lambda t: self._dist.all_reduce(t))

    def share_from_leader_(self, tensor: torch.Tensor) -> torch.Tensor:
        return self._collective(tensor, lambda t: self._dist.broadcast(t, src=0))

    def agree(self, value: str) -> str:
        """Rank 0's ``value`` on every rank (the run's id, so that every rank names the same folder)."""
        box = [value]
        self._dist.broadcast_object_list(box, src=0)
        return str(box[0])

    def describe_failure(self, error: BaseException) -> str:
        return f"rank {self.rank} of {self.world} lost the other ranks ({self.backend}): {error}"

    def close(self) -> None:
        if self._dist.is_initialized():
            self._dist.destroy_process_group()
