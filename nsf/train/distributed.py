"""Processes: joining the torchrun process group, and what the ranks share (paper Sec. 5.1 runs
on several GPUs; a CPU test runs two gloo processes).

``batch_size`` is the global batch. Under DDP each of W processes takes a contiguous slice of
every global batch and scales its summed loss by ``W / (global batch count)``
(:func:`global_batch_counts`), so DDP's gradient average equals the single-process gradient of
the global mean, even for an uneven last batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["Dist", "broadcast_buffers", "distributed", "global_batch_counts", "scaled_loss"]


@dataclass
class Dist:
    """This process's place among the processes of a run (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over the processes, in place."""
        if self.enabled:
            torch.distributed.all_reduce(tensor)
        return tensor


@contextlib.contextmanager
def distributed(device: torch.device) -> Iterator[Dist]:
    """Join the process group when started by torchrun (RANK / WORLD_SIZE / LOCAL_RANK):
    NCCL on CUDA, gloo on CPUs; the group is left on exit if this call created it."""
    dist = torch.distributed
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield Dist()
        return
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    state = Dist(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), owns
    )
    try:
        yield state
    finally:
        if owns and dist.is_initialized():
            dist.destroy_process_group()


def global_batch_counts(num_samples: int, global_batch: int, num_batches: int) -> list[int]:
    """Samples in each global batch of an epoch: full batches, then the remainder (if kept)."""
    return [min(global_batch, num_samples - i * global_batch) for i in range(num_batches)]


def scaled_loss(loss_sum: Tensor, global_count: int, world_size: int) -> Tensor:
    """The loss a process backpropagates: its summed per-sample loss times W / (global count).

    DDP averages the gradients of the W processes, so the average is the gradient of the mean
    loss over the whole global batch, however the batch is split (an uneven last batch leaves
    the processes different counts; a per-process mean would weight their samples unequally).
    """
    return loss_sum * (world_size / global_count)


def broadcast_buffers(model: nn.Module, dist: Dist) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics) before evaluation or saving."""
    if dist.enabled:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, src=0)
