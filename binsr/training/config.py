"""TrainConfig: every setting of a training run but the model, each with the help its `binsr train` option shows
and the numbers it accepts (an `Interval`, checked when a TrainConfig is made and when the option is parsed).

Kept apart from the training loop so that the command line can describe `binsr train` without importing it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from binsr.base.intervals import COUNT, POSITIVE, POSITIVE_COUNT, Interval

# Adam moves a weight by about the learning rate each step: above 1 a run only diverges (inf: NaN at step 2); 0
# keeps the weights where they start
LEARNING_RATE = Interval(0, 1)


def _setting(default, help: str, *aliases: str, valid: Interval | None = None):
    """A TrainConfig field with the help text (and any extra spellings) of its command-line option, and the
    numbers it accepts (each of them, for a tuple)."""
    return field(default=default, metadata={"help": help, "aliases": aliases, "valid": valid})


@dataclass
class TrainConfig:
    """Every setting of a training run but the model; `binsr train` has one option per field."""

    scale: int = _setting(2, "upscaling factor: 2, 3 or 4", valid=Interval(2, 4, integer=True))
    steps: int = _setting(1000, "optimizer steps", valid=POSITIVE_COUNT)
    lr: float = _setting(5e-4, "peak learning rate (cosine decay to 0)", valid=LEARNING_RATE)
    lr_patch: int = _setting(48, "LR patch side", valid=POSITIVE_COUNT)
    batch_size: int = _setting(16, "patches per step", valid=POSITIVE_COUNT)
    betas: tuple[float, float] = _setting((0.9, 0.99), "Adam betas", valid=Interval(0, 1, high_open=True))
    scalar_lr: float = _setting(1.0, "learning rate of the unit scales a1, a2 (12) as a multiple of --lr",
                                valid=POSITIVE)  # fmt: skip
    train_set: str = _setting("T91", "dataset name (see binsr.data.images.dataset_names) or image folder", "--train")
    val_sets: tuple[str, ...] = _setting(("Set5",), "validation datasets", "--val")
    val_interval: int = _setting(0, "validate every N steps (0: only after the last step)", valid=COUNT)
    checkpoint_interval: int = _setting(100, "save every N steps", valid=POSITIVE_COUNT)
    seed: int = _setting(0, "seed of the model init and the patch sampler", valid=Interval(0, 2**63 - 1, integer=True))
    device: str = _setting("auto", "auto (cuda, then mps, then cpu), cpu, cuda, ...")
    data_root: str | None = _setting(None, "benchmark folder root")
    compile: bool = _setting(True, "torch.compile the training step (falls back to eager with a warning)")
    init_from: str | None = _setting(
        None, "start from the weights of this checkpoint that fit by name and shape (e.g. an x2 model for x4)"
    )
    teacher: str | None = _setting(
        None,
        "also learn this frozen model's output on the same LR patch: a checkpoint or shipped model of the run's "
        "scale, e.g. edsr-fp-x2 (binsr.training.distill)",
    )
    distill_weight: float = _setting(
        1.0, "with --teacher: the loss is L1(SR, HR) + W * L1(SR, teacher's SR), or W times the feature distance"
    )
    distill_features: str | None = _setting(
        None,
        "with --teacher: learn the teacher's body block outputs (each divided by k) instead of its output, by "
        "their l1 or cosine distance; needs bodies of one shape (n_feats, n_blocks)",
    )

    def __post_init__(self) -> None:
        for setting in fields(self):
            valid, value = setting.metadata["valid"], getattr(self, setting.name)
            values = value if isinstance(value, tuple) else (value,)
            if valid is not None and not all(item in valid for item in values):
                each = "each " if isinstance(value, tuple) else ""
                raise ValueError(f"{setting.name}={value!r} is not valid; expected {each}{valid}")


# The fields a resumed run must share with the checkpoint to take the same steps.
TRAJECTORY_FIELDS = (
    "scale",
    "steps",
    "lr",
    "lr_patch",
    "batch_size",
    "betas",
    "scalar_lr",
    "train_set",
    "seed",
    "teacher",
    "distill_weight",
    "distill_features",
)
