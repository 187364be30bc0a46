"""Distillation: the student also learns what a frozen teacher, e.g. the full-precision model, computes.

    loss = L1(student(x), y) + W * D                                   y: the HR patch, W: distill_weight
    D = L1(student(x), teacher(x))                                     output distillation (Hinton et al. 2015)
    D = 1/B sum_i L1(s_i / k_s, t_i / k_t)                            distill_features "l1"
    D = 1/B sum_i mean over pixels of 1 - cos(s_i, t_i)              distill_features "cosine" (along channels)

s_i and t_i are the outputs of block i of the student's and the teacher's body (B blocks of the same shape), read
off the forward passes the loss makes anyway (`binsr.nn.propagation.block_outputs`); k_s and k_t are the models'
amplification factors (14): a binary body carries the image k times larger than a full-precision one (k = 1), so
the features are compared in the image's units (the cosine does not see the scale). Matching block outputs of a
full-precision teacher is how Real-to-Binary (Martinez et al. 2020) trains binary networks.

The teacher is a checkpoint or shipped model of the run's scale, frozen (no gradients, eval mode) on the
student's device. Loading it leaves torch's random state as it was, so W = 0 takes the steps of plain training.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from binsr.nn import checkpoint
from binsr.nn.models import EDSR
from binsr.nn.propagation import block_outputs, body_blocks

FEATURE_DISTANCES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss,
    "cosine": lambda s, t: (1 - F.cosine_similarity(s, t, dim=1)).mean(),
}

Term = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _check_term(weight: float, features: str | None) -> None:
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"distill_weight={weight}; expected a finite weight >= 0")
    if features is not None and features not in FEATURE_DISTANCES:
        raise ValueError(f"distill_features={features!r}; expected one of {', '.join(FEATURE_DISTANCES)} or none")


def check_settings(teacher: str | None, weight: float, features: str | None) -> None:
    """Refuse a weight that is not finite and >= 0, an unknown feature distance, or either of them set (the weight
    to other than its default 1) without a teacher."""
    _check_term(weight, features)
    for name, value, default in (("distill_weight", weight, 1.0), ("distill_features", features, None)):
        if teacher is None and value != default:
            raise ValueError(f"{name}={value!r} needs a teacher; expected --teacher as well")


def load_teacher(spec: str, scale: int, device: torch.device) -> nn.Module:
    """The frozen teacher: the shipped model or checkpoint `spec`, which must be an x`scale` model."""
    with torch.random.fork_rng(devices=[]):  # building the model draws initial weights; the run's draws stay its own
        teacher = checkpoint.load_any(spec)
    if teacher.scale != scale:
        raise ValueError(f"teacher {spec} is an x{teacher.scale} model; expected x{scale}, the scale of the run")
    return teacher.requires_grad_(False).eval().to(device)


def _body_shape(model: nn.Module) -> tuple[int, int] | None:
    """(channels, blocks) of an EDSR body, else None."""
    return (model.head.out_channels, len(body_blocks(model))) if isinstance(model, EDSR) else None


def output_distillation(weight: float) -> Term:
    """W * L1(student(x), teacher(x)) as a function of the two outputs."""
    _check_term(weight, None)
    return lambda sr, target: weight * F.l1_loss(sr, target)


@contextmanager
def distillation(student: nn.Module, teacher: nn.Module, weight: float, features: str | None = None) -> Iterator[Term]:
    """W * D (module doc) as a function of the student's and the teacher's outputs on one batch, to call right
    after both forward passes; for feature distillation the passes record their block outputs while the with
    block lasts (both models must be EDSR bodies of one shape)."""
    _check_term(weight, features)
    if features is None:
        yield output_distillation(weight)
        return
    shapes = _body_shape(student), _body_shape(teacher)
    if None in shapes or shapes[0] != shapes[1]:
        described = ["not an EDSR body" if s is None else f"{s[0]} channels x {s[1]} blocks" for s in shapes]
        raise ValueError(f"feature distillation needs two EDSR bodies of one shape; the student's is {described[0]}, "
                         f"the teacher's {described[1]}; expected the same (or output distillation)")  # fmt: skip
    distance = FEATURE_DISTANCES[features]
    with block_outputs(student) as ours, block_outputs(teacher) as theirs:

        def term(sr: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            pairs = zip(ours, theirs, strict=True)
            total = sum(distance(s / student.k, t / teacher.k) for s, t in pairs) / len(ours)
            ours.clear()  # no step's features outlive it
            theirs.clear()
            return weight * total

        yield term
