"""Training loop: any registry model on any dataset, L1 loss, Adam, cosine schedule, resumable, DDP-aware.

Schedule: cosine annealing from `lr` to 0 over `steps`,

    lr(t) = lr * (1 + cos(pi * t / steps)) / 2,

chosen over BBCU's step decay because it has no milestones to re-tune when the step budget changes.
It is a pure function of the step, and so is the batch (`PatchSampler.batch(step)`), so a run resumed from
a checkpoint (model + Adam state + step) takes bit-identical steps to one that never stopped.

Under `torchrun --nproc_per_node=N` each rank samples with seed + rank, DistributedDataParallel averages
the gradients, and rank 0 alone logs, validates and saves.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from binsr import checkpoint
from binsr.cli import add_model_arguments, model_kwargs
from binsr.data import PatchSampler, load_images
from binsr.evaluate import evaluate
from binsr.models import MODELS, create_model, model_arguments


@dataclass
class TrainConfig:
    scale: int = 2
    steps: int = 1000
    lr: float = 5e-4
    lr_patch: int = 48
    batch_size: int = 16
    betas: tuple[float, float] = (0.9, 0.99)
    train_set: str = "T91"  # a dataset name (see binsr.data.dataset_names) or a folder of images
    val_sets: tuple[str, ...] = ("Set5",)
    val_interval: int = 0  # validate every this many steps; 0: only after the last step
    checkpoint_interval: int = 100
    seed: int = 0
    device: str = "auto"  # "auto" picks cuda, then mps, then cpu
    data_root: str | None = None
    compile: bool = True  # torch.compile the training step; falls back to eager with one warning where it fails


# The fields a resumed run must share with the checkpoint to take the same steps.
TRAJECTORY_FIELDS = ("scale", "steps", "lr", "lr_patch", "batch_size", "betas", "train_set", "seed")


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
    val: list[dict] = field(default_factory=list)  # binsr.evaluate rows of the final validation
    checkpoint: Path | None = None


def learning_rate(config: TrainConfig, step: int) -> float:
    """The cosine schedule at `step` (0-based): config.lr at step 0, 0 at config.steps."""
    return config.lr * 0.5 * (1 + math.cos(math.pi * step / config.steps))


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name`, with "auto" meaning cuda, mps or cpu (the first available); under torchrun, cuda is
    this rank's LOCAL_RANK GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world


def _mean_over_ranks(value: torch.Tensor, world: int) -> float:
    """The loss averaged over ranks, so every rank logs, and stops on, the same number."""
    if world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= world
    return float(value)


def mean_psnr(rows: list[dict]) -> float | None:
    """Mean of the per-dataset PSNRs, the single number the progress bar and callback show."""
    return sum(row["psnr"] for row in rows) / len(rows) if rows else None


def train(
    model_name: str,
    model_kwargs: dict,
    config: TrainConfig,
    out_dir: str | Path,
    resume: bool = False,
    callback: Callable[[Progress], None] | None = None,
) -> TrainResult:
    """Train `create_model(model_name, scale=config.scale, **model_kwargs)`; checkpoints go to out_dir/last.pt.

    resume=True continues from out_dir/last.pt when it exists (and starts afresh when it does not); resuming a
    finished run returns its stored result at once.
    """
    if model_kwargs.get("scale", config.scale) != config.scale:
        raise ValueError(f"model_kwargs scale={model_kwargs['scale']} differs from config.scale={config.scale}")
    if config.steps < 1:
        raise ValueError(f"config.steps={config.steps}; expected a positive number of steps")
    device = resolve_device(config.device)
    rank, world = _init_distributed(device)
    torch.manual_seed(config.seed)  # identical initial weights on every rank
    model = create_model(model_name, **{**model_kwargs, "scale": config.scale}).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    step, train_seconds, val = 0, 0.0, []
    if resume and last.is_file():
        state = checkpoint.load(last)
        if state["model"] != model.config:
            raise ValueError(f"{last} holds {state['model']}; expected {model.config}")
        changed = [name for name in TRAJECTORY_FIELDS if state["config"][name] != getattr(config, name)]
        if changed:
            raise ValueError(f"{last} was trained with different {', '.join(changed)}; expected the same to resume")
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])  # for stochastic layers; sampling itself does not use it
        step, train_seconds, val = state["step"], state["metrics"]["train_seconds"], state["metrics"]["val"]
    net = model
    if world > 1:
        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    eager = net
    if config.compile:
        net = torch.compile(net)  # the module is wrapped, not replaced: state_dict keys stay those of `model`

    def save() -> Path:
        metrics = {"train_seconds": train_seconds, "val": val}
        return checkpoint.save(
            last, model, step, config=asdict(config), optimizer=optimizer.state_dict(),
            rng=torch.get_rng_state(), metrics=metrics,
        )  # fmt: skip

    pairs = load_images(config.train_set, config.scale, data_root=config.data_root)
    sampler = PatchSampler(pairs, config.scale, config.lr_patch, config.batch_size, seed=config.seed + rank)
    bar = tqdm(total=config.steps, initial=step, disable=rank != 0, desc=f"{model_name} x{config.scale}")
    model.train()
    while step < config.steps:
        started = time.perf_counter()
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        lr_batch, hr_batch = (t.to(device) for t in sampler.batch(step))
        try:
            loss = F.l1_loss(net(lr_batch), hr_batch)
        except Exception as error:  # compilation errors surface at the first call, before any state changed
            if net is eager:
                raise
            message = f"torch.compile failed ({type(error).__name__}: {error}); training in eager mode"
            warnings.warn(message, stacklevel=2)
            net = eager
            loss = F.l1_loss(net(lr_batch), hr_batch)
        loss_value = _mean_over_ranks(loss.detach(), world)
        if not math.isfinite(loss_value):
            kept = last if last.is_file() else "none written yet"
            raise FloatingPointError(f"loss is {loss_value} at step {step + 1}; stopped, last good checkpoint: {kept}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        train_seconds += time.perf_counter() - started
        if rank == 0:
            if step == config.steps or (config.val_interval and step % config.val_interval == 0):
                val = evaluate(model, config.val_sets, config.scale, data_root=config.data_root)
            if step == config.steps or step % config.checkpoint_interval == 0:
                save()
            bar.update()
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", val_psnr=mean_psnr(val))
            if callback is not None:
                callback(Progress(step, loss_value, lr, mean_psnr(val)))
    bar.close()
    if world > 1:
        dist.barrier()  # no rank leaves (and tears down the group) while rank 0 still validates or saves
        dist.destroy_process_group()
    return TrainResult(model.eval(), step, train_seconds, val, last if rank == 0 else None)


# ---- command line (wired by binsr.cli as `binsr train`) ------------------------------------------------


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `binsr train`: the model (as for `binsr summary`), then one per TrainConfig field."""
    parser.add_argument("--model", required=True, choices=list(MODELS), help="registry name")
    add_model_arguments(parser)  # --scale, --n-feats, --n-blocks, --att-bin, --att-res, --k
    parser.add_argument("--out", default=None, help="output directory (default runs/train/<model>-x<scale>)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if it exists")
    short = {"train_set": ["--train"], "val_sets": ["--val"]}  # the spellings of the docs and the issue
    helps = {
        "steps": "optimizer steps", "lr": "peak learning rate (cosine decay to 0)", "lr_patch": "LR patch side",
        "batch_size": "patches per step", "betas": "Adam betas", "train_set": "dataset name or image folder",
        "val_sets": "validation datasets", "val_interval": "validate every N steps (0: only at the end)",
        "checkpoint_interval": "save every N steps", "seed": "seed of the model init and the patch sampler",
        "device": "auto (cuda, then mps, then cpu), cpu, cuda, ...", "data_root": "benchmark folder root",
        "compile": "torch.compile the training step (falls back to eager with a warning)",
    }
    for name, value in asdict(TrainConfig()).items():
        flag = ["--" + name.replace("_", "-"), *short.get(name, [])]
        if name == "scale":
            continue
        if isinstance(value, bool):
            parser.add_argument(*flag, action=argparse.BooleanOptionalAction, default=value,
                                help=f"{helps[name]} (default: {value})")
        elif isinstance(value, tuple):
            parser.add_argument(*flag, type=float if name == "betas" else str, nargs="*", default=list(value),
                                help=f"{helps[name]} (default: {' '.join(map(str, value))})")
        else:
            parser.add_argument(*flag, type=str if value is None else type(value), default=value,
                                help=f"{helps[name]} (default: {value})")


def train_command(args: argparse.Namespace) -> TrainResult:
    """`binsr train` (also under torchrun)."""
    fields = asdict(TrainConfig())
    config = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in fields})
    kwargs = model_kwargs(args)
    model_arguments(args.model, **kwargs)  # fail on a bad argument before loading any data
    out = args.out or f"runs/train/{args.model}-x{config.scale}"
    result = train(args.model, kwargs, config, out, resume=args.resume)
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}  ({result.step} steps, {result.train_seconds:.0f} s)")
    return result
