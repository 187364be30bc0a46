"""TrainConfig: every setting of a training run but the model, each with the help its `binsr train` option shows.

Kept apart from the training loop so that the command line can describe `binsr train` without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _setting(default, help: str, *aliases: str):
    """A TrainConfig field with the help text (and any extra spellings) of its command-line option."""
    return field(default=default, metadata={"help": help, "aliases": aliases})


@dataclass
class TrainConfig:
    """Every setting of a training run but the model; `binsr train` has one option per field."""

    scale: int = _setting(2, "upscaling factor: 2, 3 or 4")
    steps: int = _setting(1000, "optimizer steps")
    lr: float = _setting(5e-4, "peak learning rate (cosine decay to 0)")
    lr_patch: int = _setting(48, "LR patch side")
    batch_size: int = _setting(16, "patches per step")
    betas: tuple[float, float] = _setting((0.9, 0.99), "Adam betas")
    scalar_lr: float = _setting(1.0, "learning rate of the unit scales a1, a2 (12) as a multiple of --lr")
    train_set: str = _setting("T91", "dataset name (see binsr.data.dataset_names) or image folder", "--train")
    val_sets: tuple[str, ...] = _setting(("Set5",), "validation datasets", "--val")
    val_interval: int = _setting(0, "validate every N steps (0: only after the last step)")
    checkpoint_interval: int = _setting(100, "save every N steps")
    seed: int = _setting(0, "seed of the model init and the patch sampler")
    device: str = _setting("auto", "auto (cuda, then mps, then cpu), cpu, cuda, ...")
    data_root: str | None = _setting(None, "benchmark folder root")
    compile: bool = _setting(True, "torch.compile the training step (falls back to eager with a warning)")
    init_from: str | None = _setting(
        None, "start from the weights of this checkpoint that fit by name and shape (e.g. an x2 model for x4)"
    )
    teacher: str | None = _setting(
        None, "also learn this frozen model's output on the same LR patch: a checkpoint or shipped model of the run's "
        "scale, e.g. edsr-fp-x2 (binsr.distill)"
    )
    distill_weight: float = _setting(
        1.0, "with --teacher: the loss is L1(SR, HR) + W * L1(SR, teacher's SR), or W times the feature distance"
    )
    distill_features: str | None = _setting(
        None, "with --teacher: learn the teacher's body block outputs (each divided by k) instead of its output, by "
        "their l1 or cosine distance; needs bodies of one shape (n_feats, n_blocks)"
    )


# The fields a resumed run must share with the checkpoint to take the same steps.
TRAJECTORY_FIELDS = ("scale", "steps", "lr", "lr_patch", "batch_size", "betas", "scalar_lr", "train_set", "seed",
                     "teacher", "distill_weight", "distill_features")
