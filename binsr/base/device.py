"""The torch device a command or a training run uses: "auto" resolved, and a bad name refused with one line."""

from __future__ import annotations

import os

import torch


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
