"""`binsr bench --train`: training-step speed, eager vs torch.compile, full precision vs binary; ratios only.

Every candidate is one optimizer step (forward, L1 loss, backward, Adam) of a 32 x 8 EDSR at the training
recipe's batch (16 LR patches of 48 px, x2), one thread. Candidates run interleaved and keep the median of
`repeats` steps (`binsr.evaluation.bench.median_times`), after compiling and warming up, so compile time is not counted.
Goals (issue 11): compiled >= 1.6x eager for the binary models; a compiled binary step <= 1.3x the FP step.

`binsr bench --distill`: what learning from the shipped FP model's output costs a binary model's compiled step
(`binsr.training.distill`, W = 1), the step of `binsr train`'s own loss with and without the teacher.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from binsr.evaluation.bench import Clock, median_times
from binsr.nn.models import create_model
from binsr.training.distill import load_teacher, output_distillation
from binsr.training.train import _Loss

MODELS = {
    "EDSR-FP": ("edsr-fp", {}),
    "EDSR-BBCU": ("edsr-bbcu", {}),
    "attentive (se)": ("edsr-proposed", {"att_bin": "se", "att_res": "se"}),
}


def training_step(name: str, kwargs: dict, compiled: bool, batch: int = 16, patch: int = 48) -> Callable[[], None]:
    """One optimizer step of `create_model(name, scale=2, n_feats=32, n_blocks=8, **kwargs)` on a fixed batch."""
    torch.manual_seed(0)
    model = create_model(name, scale=2, n_feats=32, n_blocks=8, **kwargs).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    net = torch.compile(model) if compiled else model
    lr, hr = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, 2 * patch, 2 * patch)

    def step() -> None:
        loss = F.l1_loss(net(lr), hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def train_speed_rows(repeats: int = 5) -> list[dict]:
    """Per model: eager and compiled seconds per step (median, interleaved) and their ratios."""
    torch.set_num_threads(1)
    candidates = {}
    for label, (name, kwargs) in MODELS.items():
        for compiled in (False, True):
            candidates[(label, compiled)] = training_step(name, kwargs, compiled)
    times = median_times({f"{label}|{compiled}": step for (label, compiled), step in candidates.items()}, repeats)
    fp_compiled = times["EDSR-FP|True"]
    rows = []
    for label in MODELS:
        eager, compiled = times[f"{label}|False"], times[f"{label}|True"]
        rows.append({"model": label, "eager_s": eager, "compiled_s": compiled, "compile_speedup": eager / compiled,
                     "vs_fp_compiled": compiled / fp_compiled})  # fmt: skip
    return rows


def format_train_speed(rows: list[dict]) -> str:
    """The table `binsr bench --train` prints: ratios, with the step times that make them."""
    lines = [
        "model            compiled vs eager   step vs FP step (compiled)",
    ]
    for row in rows:
        lines.append(f"{row['model']:<16} {row['compile_speedup']:>6.2f}x            {row['vs_fp_compiled']:>6.2f}x")
    lines.append("(1 thread, batch 16 x 48 px, x2, 32 x 8; median of interleaved steps; goals: >= 1.6x, <= 1.3x)")
    return "\n".join(lines)


DISTILLED = ("EDSR-BBCU", "attentive (se)")


def distilled_step(name: str, kwargs: dict, teacher: nn.Module | None, batch: int = 16, patch: int = 48
                   ) -> Callable[[], None]:  # fmt: skip
    """One compiled optimizer step of `binsr train`'s loss for `create_model(name, scale=2, n_feats=32, n_blocks=8,
    **kwargs)` on a fixed batch, with output distillation from `teacher` (W = 1) unless it is None."""
    torch.manual_seed(0)
    model = create_model(name, scale=2, n_feats=32, n_blocks=8, **kwargs).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = _Loss(model, True, teacher, None if teacher is None else output_distillation(1.0))
    lr, hr = torch.rand(batch, 3, patch, patch), torch.rand(batch, 3, 2 * patch, 2 * patch)

    def step() -> None:
        loss = loss_fn(lr, hr)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def distill_overhead_rows(repeats: int = 5, teacher: str = "edsr-fp-x2", clock: Clock = time.perf_counter
                          ) -> list[dict]:  # fmt: skip
    """Per model of DISTILLED: seconds per compiled step without and with `teacher` (median, interleaved, timed
    with `clock`) and their ratio, the overhead of distillation."""
    torch.set_num_threads(1)
    fp = load_teacher(teacher, 2, torch.device("cpu"))
    candidates = {
        f"{label}|{distilled}": distilled_step(*MODELS[label], fp if distilled else None)
        for label in DISTILLED for distilled in (False, True)
    }  # fmt: skip
    times = median_times(candidates, repeats, clock)
    rows = []
    for label in DISTILLED:
        plain, distilled = times[f"{label}|False"], times[f"{label}|True"]
        rows.append({"model": label, "plain_s": plain, "distilled_s": distilled, "overhead": distilled / plain})
    return rows


def format_distill_overhead(rows: list[dict], teacher: str = "edsr-fp-x2") -> str:
    """The table `binsr bench --distill` prints: the ratios, and the step times that make them."""
    lines = ["model            step with the teacher vs without (compiled)"]
    for row in rows:
        times = f"({row['distilled_s'] * 1e3:.0f} ms vs {row['plain_s'] * 1e3:.0f} ms)"
        lines.append(f"{row['model']:<16} {row['overhead']:>6.2f}x  {times}")
    lines.append(f"(1 thread, batch 16 x 48 px, x2, 32 x 8; output distillation from {teacher}, W = 1; "
                 "median of interleaved steps)")  # fmt: skip
    return "\n".join(lines)
