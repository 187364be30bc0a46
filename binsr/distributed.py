"""The device and the process group of a training run: one process, or N under `torchrun --nproc_per_node=N`.

Every rank takes the same steps, so every decision that ends or refuses a run (a NaN loss, a Ctrl-C, a run
folder rank 0 cannot use) is agreed by an all-reduce: a rank that left alone would leave the others
blocked in their next collective.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name`, with "auto" meaning cuda, mps or cpu (the first available); under torchrun, cuda is
    this rank's LOCAL_RANK GPU. A name torch does not know, or a device that cannot hold a tensor here (cuda on a
    machine without it), is a one-line ValueError now rather than a traceback at the first tensor moved to it."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    else:
        _check_device(name)
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _check_device(name: str) -> None:
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not valid; expected auto, cpu, cuda, cuda:N, mps, ...") from None
    try:
        torch.zeros(1, device=device).cpu()  # a meta tensor exists but holds no numbers: refused as well
    except Exception as error:  # AssertionError without CUDA, RuntimeError for a GPU index it lacks, ...
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0]  # torch's can be long
        raise ValueError(f"device {name!r} is not available here ({reason}); expected auto, cpu or a device this "
                         "machine has") from None  # fmt: skip


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
