"""Training in several processes started by torchrun (``torch.distributed.run``), the way users launch
every other trainer: one process per GPU, on one machine or several.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT for each process; the processes
join one torch.distributed group over NCCL on GPUs and gloo on CPUs. ``RanksTeam`` gives the Trainer the
same three operations as the notebook's own team (``training.parallel.Team``): sum a buffer over the
ranks, take rank 0's copy, and say who leads. So every rank trains a replica on its share of each
optimizer step and takes the same step, and rank 0 alone writes the run folder.
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch

from .parallel import STEP_TIMEOUT, TeamError


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


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
