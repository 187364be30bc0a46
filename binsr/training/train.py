"""Training loop: any registry model on any dataset, L1 loss, Adam, cosine schedule, resumable, DDP-aware.

With a teacher (`TrainConfig.teacher`, e.g. the shipped full-precision model) the loss also pulls the student
towards the teacher's output or block outputs (`binsr.training.distill`).

Schedule: cosine annealing from `lr` to 0 over `steps`,

    lr(t) = lr * (1 + cos(pi * t / steps)) / 2,

chosen over BBCU's step decay because it has no milestones to re-tune when the step budget changes.
It is a pure function of the step, and so is the batch (`PatchSampler.batch(step)`), so a run resumed from
a checkpoint (model + Adam state + step) takes bit-identical steps to one that never stopped.

Nothing is lost: the run folder is checked and locked before the first step (`binsr.base.files`); SIGINT or
SIGTERM ends the step in flight, saves it and raises `TrainingInterrupted`; a non-finite loss stops the run
before it reaches the weights, and weights that an update made non-finite (a loss can be finite while its step
diverges) stop it before they are saved, so the last checkpoint is always the last good one.

Under `torchrun --nproc_per_node=N` each rank samples with seed + rank, DistributedDataParallel averages
the gradients, and rank 0 alone logs, validates and saves (`binsr.training.distributed`).
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from binsr.base.device import resolve_device
from binsr.base.files import claim_run
from binsr.data.images import PatchSampler, load_images
from binsr.evaluation.evaluate import evaluate
from binsr.nn import checkpoint
from binsr.nn.models import complete_config, create_model
from binsr.training.config import TRAJECTORY_FIELDS, TrainConfig
from binsr.training.distill import Term, check_settings, distillation, load_teacher
from binsr.training.distributed import any_rank, finish, init_distributed, mean_and_any


@dataclass
class Progress:
    """What the callback (on rank 0) sees after every step; val_psnr: the latest validation, None before any."""

    step: int
    loss: float
    lr: float
    val_psnr: float | None


@dataclass
class TrainResult:
    model: nn.Module
    step: int
    train_seconds: float  # time in training steps, validation excluded
    val: list[dict] = field(default_factory=list)  # binsr.evaluation.evaluate rows of the final validation
    checkpoint: Path | None = None


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped `train` after the step in flight, which is saved in `checkpoint` (on rank 0)."""

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"interrupted after step {step}; saved to {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


def learning_rate(config: TrainConfig, step: int) -> float:
    """The cosine schedule at `step` (0-based): config.lr at step 0, 0 at config.steps."""
    return config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))


def parameter_groups(model: nn.Module, scalar_lr: float) -> list[dict]:
    """Adam's parameter groups: one, or two when the unit scales a1, a2 (12) learn at scalar_lr times the rate."""
    if not (math.isfinite(scalar_lr) and scalar_lr > 0):
        raise ValueError(f"scalar_lr={scalar_lr}; expected a positive finite multiple of the learning rate")
    scalars, others = [], []
    for name, p in model.named_parameters():
        (scalars if name.rsplit(".", 1)[-1] in ("a1", "a2") else others).append(p)
    if scalar_lr == 1 or not scalars:
        return [{"params": list(model.parameters())}]
    return [{"params": others}, {"params": scalars, "lr_scale": scalar_lr}]


def mean_psnr(rows: list[dict]) -> float | None:
    """Mean of the per-dataset PSNRs, the single number the progress bar and callback show."""
    return sum(row["psnr"] for row in rows) / len(rows) if rows else None


@dataclass
class _RunState:
    """What a checkpoint stores besides the model and optimizer."""

    step: int = 0
    train_seconds: float = 0.0
    val: list[dict] = field(default_factory=list)


@contextmanager
def _signals_noted() -> Iterator[list[int]]:
    """A list that collects SIGINT and SIGTERM instead of dying on them; a second one of a kind acts as usual.

    Handlers can only be set in the main thread; elsewhere (a training thread of a GUI) nothing changes."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def note(signum: int, frame: object) -> None:
        received.append(signum)
        signal.signal(signum, previous[signum] or signal.SIG_DFL)  # a second Ctrl-C stops at once

    for sig in previous:
        signal.signal(sig, note)
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler or signal.SIG_DFL)


def _claim_folder(hold: ExitStack, out_dir: Path, resume: bool, overwrite: bool, rank: int, world: int,
                  device: torch.device) -> Path:  # fmt: skip
    """out_dir/last.pt, once rank 0 has checked and locked out_dir; every rank raises if rank 0 could not."""
    refusal = None
    if rank == 0:
        try:
            hold.enter_context(claim_run(out_dir, resume, overwrite))
        except (ValueError, OSError) as error:
            refusal = error
    if any_rank(refusal is not None, world, device):
        raise refusal or ValueError(f"rank 0 could not use run folder {out_dir}; see its error")
    return out_dir / "last.pt"


def _restore(last: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig) -> _RunState:
    """Load a run to resume into `model` and `optimizer`; refuse one that would not take the same steps."""
    state = checkpoint.load(last)
    missing = [key for key in ("config", "optimizer", "rng", "metrics") if key not in state]
    if missing:
        raise ValueError(f"{last} has no {', '.join(missing)}; expected a checkpoint written by binsr train")
    if complete_config(state["model"]) != model.config:
        raise ValueError(f"{last} holds {state['model']}; expected {model.config}")
    defaults = asdict(TrainConfig())  # for fields added after the checkpoint was written
    saved = {**defaults, **state["config"]}
    changed = [name for name in TRAJECTORY_FIELDS if saved[name] != getattr(config, name)]
    if changed:
        raise ValueError(f"{last} was trained with different {', '.join(changed)}; expected the same to resume")
    model.load_state_dict(state["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"])  # for stochastic layers; sampling itself does not use it
    return _RunState(state["step"], state["metrics"]["train_seconds"], state["metrics"]["val"])


def _check_finite(model: nn.Module, step: int, last: Path) -> None:
    """Refuse to go on (and to save) once the weights are NaN or infinite: the checkpoint keeps the last good ones."""
    weights = model.state_dict()
    bad = [name for name, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        kept = last if last.is_file() else "none written yet"
        raise FloatingPointError(f"step {step} made {len(bad)} of {len(weights)} weight tensors NaN or infinite; "
                                 f"stopped, last good checkpoint: {kept}")  # fmt: skip


def _save(last: Path, model: nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig, run: _RunState) -> Path:
    metrics = {"train_seconds": run.train_seconds, "val": run.val}
    return checkpoint.save(
        last, model, run.step, config=asdict(config), optimizer=optimizer.state_dict(),
        rng=torch.get_rng_state(), metrics=metrics,
    )  # fmt: skip


class _Compiled:
    """`module` torch.compile'd when asked; where compiling fails (at the first call, before any state changed)
    it warns once and stays eager."""

    def __init__(self, module: nn.Module, compile: bool):
        self.eager = module
        # dynamic=False: a process that trains models on several patch sizes (the experiment grid, a notebook)
        # would otherwise get a shape-generic graph on the second size, which inductor 2.13 fails to build for
        # these nets ("cannot determine truth value of Relational"); one graph per size compiles and runs
        self.module = torch.compile(module, dynamic=False) if compile else module  # state_dict keys stay the model's

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        try:
            # feature distillation reads block outputs through forward hooks; by default a graph compiled earlier in
            # the process without them (or with them) would be reused without a look at the hooks
            with torch._dynamo.config.patch(skip_nnmodule_hook_guards=False):
                return self.module(x)
        except Exception as error:
            if self.module is self.eager:
                raise
            message = f"torch.compile failed ({type(error).__name__}: {error}); training in eager mode"
            warnings.warn(message, stacklevel=4)  # at the line of train() that computes the loss
            self.module = self.eager
            return self.module(x)


class _Loss:
    """The training loss of `net`: L1 to the HR patch, plus the distillation term `distill` of
    `binsr.training.distill.distillation` when a teacher is given; student and teacher each run compiled when asked."""

    def __init__(self, net: nn.Module, compile: bool, teacher: nn.Module | None = None, distill: Term | None = None):
        self.net = _Compiled(net, compile)
        self.teacher = None if teacher is None else _Compiled(teacher, compile)
        self.distill = distill

    def __call__(self, lr_batch: torch.Tensor, hr_batch: torch.Tensor) -> torch.Tensor:
        sr = self.net(lr_batch)
        loss = F.l1_loss(sr, hr_batch)
        if self.teacher is None:
            return loss
        with torch.no_grad():
            target = self.teacher(lr_batch)
        return loss + self.distill(sr, target)


def train(
    model_name: str,
    model_kwargs: dict,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    callback: Callable[[Progress], None] | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train `create_model(model_name, scale=config.scale, **model_kwargs)`; checkpoints go to out_dir/last.pt.

    resume=True continues from out_dir/last.pt when it exists (and starts afresh when it does not); resuming a
    finished run returns its stored result at once. A folder that holds a run is refused unless resume or
    overwrite is set. SIGINT/SIGTERM save the step in flight and raise `TrainingInterrupted`. progress=False
    hides the tqdm bar (a notebook that draws its own live plot would otherwise save a bar stuck at 0 %).
    """
    if model_kwargs.get("scale", config.scale) != config.scale:
        raise ValueError(f"model_kwargs scale={model_kwargs['scale']} differs from config.scale={config.scale}")
    if config.steps < 1:
        raise ValueError(f"config.steps={config.steps}; expected a positive number of steps")
    check_settings(config.teacher, config.distill_weight, config.distill_features)
    device = resolve_device(config.device)
    teacher = None if config.teacher is None else load_teacher(config.teacher, config.scale, device)
    rank, world = init_distributed(device)
    with ExitStack() as hold:
        last = _claim_folder(hold, Path(out_dir), resume, overwrite, rank, world, device)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        model = create_model(model_name, **{**model_kwargs, "scale": config.scale}).to(device)
        optimizer = torch.optim.Adam(parameter_groups(model, config.scalar_lr), lr=config.lr, betas=config.betas)
        if resume and last.is_file():
            run = _restore(last, model, optimizer, config)
        else:
            if config.init_from:
                checkpoint.warm_start(model, config.init_from)
            run = _RunState()
        net = model
        if world > 1:
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        distill = None
        if teacher is not None:
            distill = hold.enter_context(distillation(model, teacher, config.distill_weight, config.distill_features))
        loss_fn = _Loss(net, config.compile, teacher, distill)
        pairs = load_images(config.train_set, config.scale, data_root=config.data_root)
        sampler = PatchSampler(pairs, config.scale, config.lr_patch, config.batch_size, seed=config.seed + rank)
        signals = hold.enter_context(_signals_noted())
        bar = hold.enter_context(
            tqdm(
                total=config.steps,
                initial=run.step,
                disable=rank != 0 or not progress,
                desc=f"{model_name} x{config.scale}",
            )
        )
        model.train()
        while run.step < config.steps:
            started = time.perf_counter()
            lr = learning_rate(config, run.step)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            lr_batch, hr_batch = (t.to(device) for t in sampler.batch(run.step))
            loss = loss_fn(lr_batch, hr_batch)
            loss_value, stopping = mean_and_any(loss, bool(signals), world)  # every rank stops at the same step
            if not math.isfinite(loss_value):
                kept = last if last.is_file() else "none written yet"
                message = f"loss is {loss_value} at step {run.step + 1}; stopped, last good checkpoint: {kept}"
                raise FloatingPointError(message)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            run.step += 1
            run.train_seconds += time.perf_counter() - started
            done = run.step == config.steps
            saving = done or stopping or run.step % config.checkpoint_interval == 0
            if saving:
                _check_finite(model, run.step, last)  # on every rank: DDP keeps their weights equal
            if rank == 0:
                if done or (config.val_interval and run.step % config.val_interval == 0):
                    run.val = evaluate(model, config.val_sets, config.scale, data_root=config.data_root)
                if saving:
                    _save(last, model, optimizer, config, run)
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", val_psnr=mean_psnr(run.val))
                if callback is not None:
                    callback(Progress(run.step, loss_value, lr, mean_psnr(run.val)))
            if stopping and not done:
                finish(world)
                raise TrainingInterrupted(run.step, last if rank == 0 else None)
    finish(world)
    return TrainResult(model.eval(), run.step, run.train_seconds, run.val, last if rank == 0 else None)
