"""The process group of a training run: one process, or N under `torchrun --nproc_per_node=N`.

Every rank takes the same steps, so every decision that ends or refuses a run (a NaN loss, a Ctrl-C, a run
folder rank 0 cannot use) is agreed by an all-reduce: a rank that left alone would leave the others
blocked in their next collective.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def mean_and_any(value: torch.Tensor, flag: bool, world: int) -> tuple[float, bool]:
    """(`value` averaged over ranks, whether `flag` is set on any rank), in one all-reduce."""
    packed = torch.stack([value.detach().float(), torch.tensor(float(flag), device=value.device)])
    if world > 1:
        dist.all_reduce(packed)
    return float(packed[0]) / world, bool(packed[1] > 0)


def any_rank(flag: bool, world: int, device: torch.device) -> bool:
    """Whether `flag` is set on any rank."""
    return mean_and_any(torch.zeros((), device=device), flag, world)[1]


def finish(world: int) -> None:
    """Leave the process group; no rank leaves while rank 0 still validates or saves."""
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
