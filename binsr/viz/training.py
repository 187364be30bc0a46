"""Notebook 08, train a small model yourself: model choice, a live loss / PSNR log, learning from the FP model."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from matplotlib.figure import Figure

from binsr.nn.checkpoint import shipped_config
from binsr.nn.models import model_arguments
from binsr.training.train import TrainConfig, train
from binsr.viz.common import model_color, new_figure, styled

BLOCK_CHOICES: tuple[str, ...] = ("FP", "BBCU", "proposed")


def model_choice(
    block: str,
    att_bin: str = "pixel",
    att_res: str = "pixel",
    n_feats: int = 32,
    n_blocks: int = 8,
    gate_input: str | None = None,
) -> tuple[str, dict]:
    """(registry name, kwargs) for a block family of BLOCK_CHOICES; the attention kinds and what the gates see
    (9b; None: the model's default) apply to "proposed"."""
    kwargs: dict = {"n_feats": n_feats, "n_blocks": n_blocks}
    if block == "FP":
        return "edsr-fp", kwargs
    if block == "BBCU":
        return "edsr-bbcu", kwargs
    if block == "proposed":
        kwargs = {**kwargs, "att_bin": att_bin, "att_res": att_res}
        return "edsr-proposed", kwargs if gate_input is None else {**kwargs, "gate_input": gate_input}
    raise ValueError(f"block={block!r} is not valid; expected one of {', '.join(BLOCK_CHOICES)}")


class TrainingLog:
    """A `binsr.training.train` callback that records every step and calls `on_update(self)` every `every` steps (and
    at the last step, and whenever a new validation arrives) so a notebook can redraw a live plot."""

    def __init__(
        self, on_update: Callable[[TrainingLog], None] | None = None, every: int = 1, total: int | None = None
    ):
        self.on_update, self.every, self.total = on_update, max(1, int(every)), total
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.val_steps: list[int] = []
        self.val_psnr: list[float] = []
        self.started = time.perf_counter()

    def __call__(self, progress) -> None:
        self.steps.append(progress.step)
        self.loss.append(progress.loss)
        self.lr.append(progress.lr)
        new_val = progress.val_psnr is not None and (not self.val_psnr or progress.val_psnr != self.val_psnr[-1])
        if new_val:
            self.val_steps.append(progress.step)
            self.val_psnr.append(progress.val_psnr)
        last = self.total is not None and progress.step >= self.total
        if self.on_update is not None and (new_val or last or progress.step % self.every == 0):
            self.on_update(self)


@styled
def training_figure(
    log: TrainingLog, references: dict[str, float] | None = None, total: int | None = None, run_label: str = "this run"
) -> Figure:
    """L1 loss per step (left) and validation PSNR (right) from a `TrainingLog`, with horizontal lines for
    `references` ({label: PSNR in dB}, e.g. bicubic and the shipped checkpoint). `run_label` names the run in
    the legend and picks its colour (`model_color`: pass the block, e.g. "BBCU", to draw it in BBCU's colour)."""
    total = total or log.total or (log.steps[-1] if log.steps else 1)
    fig = new_figure(10.0, 4.0)
    ax_l, ax_p = fig.subplots(1, 2)
    if log.steps:
        ax_l.plot(log.steps, log.loss, color="black", lw=1.5)
        ax_l.set_yscale("log")
    ax_l.set_xlim(0, total)
    ax_l.set_xlabel("training step")
    ax_l.set_ylabel("L1 loss (log scale)" if log.steps else "L1 loss")
    ax_l.set_title(f"training loss (step {log.steps[-1] if log.steps else 0}/{total})")
    for (label, value), ls in zip((references or {}).items(), ("--", ":", "-."), strict=False):
        ax_p.axhline(value, color=model_color(label), ls=ls, label=f"{label}: {value:.2f} dB")
    if log.val_psnr:
        color = model_color(run_label)
        ax_p.plot(log.val_steps, log.val_psnr, "o-", color=color, label=f"{run_label}: {log.val_psnr[-1]:.2f} dB")
    ax_p.set_xlim(0, total)
    ax_p.set_xlabel("training step")
    ax_p.set_ylabel("PSNR on Y (dB)")
    ax_p.set_title("validation PSNR")
    if ax_p.get_legend_handles_labels()[0]:  # below the panels: the curve climbs through any corner
        fig.legend(*ax_p.get_legend_handles_labels(), loc="outside lower center", ncols=3)
    return fig


def train_small(
    block: str = "proposed",
    att_bin: str = "pixel",
    att_res: str = "pixel",
    scale: int = 2,
    steps: int = 20,
    lr: float = 2e-3,
    batch_size: int = 16,
    val_interval: int = 0,
    val_sets: tuple[str, ...] = ("photos-test",),
    train_set: str = "photos-train",
    n_feats: int = 32,
    n_blocks: int = 8,
    callback: Callable | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    gate_input: str | None = None,
    teacher: str | None = None,
    distill_weight: float = 1.0,
):
    """`binsr.training.train` of `model_choice(block, ...)` on the embedded photos (by default), in a temporary folder
    unless `out_dir` is given; returns the TrainResult. `teacher` (e.g. `fp_teacher(scale, manifest)`) adds
    distill_weight x the L1 distance to its output to the loss (binsr.training.distill). Everything else is
    TrainConfig's defaults. No tqdm bar: its widget would be saved in the notebook at 0 %; `callback` (a `TrainingLog`)
    shows the progress instead."""
    name, kwargs = model_choice(block, att_bin, att_res, n_feats, n_blocks, gate_input)
    config = TrainConfig(
        scale=scale, steps=steps, lr=lr, batch_size=batch_size, train_set=train_set, val_sets=tuple(val_sets),
        val_interval=val_interval, checkpoint_interval=steps, seed=seed, device="cpu", compile=False,
        teacher=teacher, distill_weight=distill_weight,
    )  # fmt: skip
    if out_dir is not None:
        return train(name, kwargs, config, out_dir, callback=callback, progress=False)
    with tempfile.TemporaryDirectory(prefix="binsr-train-") as tmp:
        return train(name, kwargs, config, tmp, callback=callback, progress=False)


def fp_teacher(scale: int, manifest: dict) -> str | None:
    """The shipped full-precision model of `scale` (a `read_manifest` key, e.g. "edsr-fp-x2"): the teacher of
    "learn from the FP model"; None where none is shipped."""
    name = f"edsr-fp-x{scale}"
    return name if name in manifest["models"] else None


def shipped_match(model_name: str, kwargs: dict, scale: int, manifest: dict) -> str | None:
    """The shipped checkpoint (a `read_manifest` key) built with exactly `create_model(model_name, scale=scale,
    **kwargs)`'s arguments, or None."""
    wanted = model_arguments(model_name, **{**kwargs, "scale": scale})
    for name, entry in manifest["models"].items():
        if shipped_config(entry) == {"name": model_name, "kwargs": wanted}:
            return name
    return None
