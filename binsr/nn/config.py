"""A model's one description: frozen dataclasses that hold its choices, passed whole down the layers.

    ModelConfig      registry name, scale, width, depth, amplification k (14), EDSR's res_scale, and two parts:
      Binarization   how a binary conv binarizes: the activation sign's backward (2)-(4), alpha (6), its gradient (6a)
      Attention      the attentive unit (12): attention kind per branch, gate form (9a) and start, what the gate
                     sees (9b), the start of the branch scales a1, a2

Every field carries the help text of its `binsr` option and the values it accepts (a choice tuple or an `Interval`),
checked when the dataclass is made; `binsr.cli` generates the model options from these fields. The flat argument
names of `create_model` are the field names, unique across the three. The defaults are not here: each registry
model states all of its own in `binsr.nn.models.MODELS`; only BBCU's binarization, the one every BBCU unit uses
unless told otherwise, is named here (`BBCU_BINARIZATION`).

A stored config (a checkpoint's "model") records `VERSION`; `upgrade` brings an older one to today's names and
meanings through `MIGRATIONS`, one named step per version. Files written before the version was recorded have none
and are read as version 1.

Imports: the standard library and `binsr.base` only, so that the command line can describe a model without torch.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from typing import Literal

from binsr.base.intervals import FINITE, POSITIVE, Interval

SignBackward = Literal["clipped", "approx", "identity"]
AlphaMode = Literal["mean", "learnable"]
WeightGrad = Literal["bbcu", "scaled"]
SIGN_BACKWARDS: tuple[str, ...] = typing.get_args(SignBackward)
ALPHA_MODES: tuple[str, ...] = typing.get_args(AlphaMode)
WEIGHT_GRADS: tuple[str, ...] = typing.get_args(WeightGrad)
ATTENTION_KINDS: tuple[str, ...] = ("none", "se", "spatial", "pixel")
GATE_FORMS: tuple[str, ...] = ("sigmoid", "2sigmoid")
GATE_INPUTS: tuple[str, ...] = ("amplified", "unit")  # what the attention gates see (9b): k x or x
SCALES: tuple[int, ...] = (2, 3, 4)


def _choice(help: str, choices: tuple):
    """A field that accepts one of `choices` (of their type exactly: 2.0 == 2 and True == 1 are not choices)."""
    return field(metadata={"help": help, "choices": choices})


def _number(help: str, valid: Interval, none: str | None = None):
    """A field that accepts the numbers in `valid`, and None when `none` says what None means."""
    return field(metadata={"help": help, "valid": valid, "none": none})


def expected(setting: Field, value: object) -> str | None:
    """What the field `setting` accepts when `value` is not that (None when it is)."""
    meta = setting.metadata
    if value is None and meta.get("none"):
        return None
    if "choices" in meta:
        choices = meta["choices"]
        fits = type(value) is type(choices[0]) and value in choices
        return None if fits else f"one of {', '.join(map(str, choices))}"
    return None if value in meta["valid"] else f"{meta['valid']}" + (" or None" if meta.get("none") else "")


def _check(spec: object) -> None:
    """The one-line ValueError for the first field of `spec` that holds a value it does not accept."""
    for setting in fields(spec):
        value = getattr(spec, setting.name)
        if setting.metadata and (value is not None or setting.name not in OPTIONAL):
            wanted = expected(setting, value)
            if wanted is not None:
                raise ValueError(f"{setting.name}={value!r} is not valid; expected {wanted}")


@dataclass(frozen=True)
class Binarization:
    """How a binary conv (`binsr.nn.binary.BinaryConv2d`) binarizes its input and its weights."""

    sign_backward: str = _choice(
        "the activation sign's surrogate gradient: clipped (2), approx (3), identity (4)", SIGN_BACKWARDS
    )
    alpha_mode: str = _choice("weight scale alpha (6): mean|W| each step (BBCU) or a learned parameter", ALPHA_MODES)
    weight_grad: str = _choice("latent-weight gradient (6a): BBCU's STE, or scaled by alpha", WEIGHT_GRADS)

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class Attention:
    """The attentive unit's choices (12): which attention on each branch, its gate and where training starts."""

    att_bin: str = _choice("attention on the binary branch, Att_b (12)", ATTENTION_KINDS)
    att_res: str = _choice("attention on the full-precision residual, Att_r (12)", ATTENTION_KINDS)
    gate: str = _choice("gate form (9a): sigmoid (the papers) or 2 sigmoid (1 at z = 0)", GATE_FORMS)
    gate_init: float | None = _number(
        "the value every gate map starts at (9a)", FINITE, none="PyTorch's default init of the last layer (the papers)"
    )
    gate_input: str = _choice(
        "what the gates see (9b): the features / k (unit) or as they are, k-amplified "
        "(amplified: spatial and pixel gates jump at step 1, README)",
        GATE_INPUTS,
    )
    a1_init: float = _number("start of a1, the binary branch's scale (12)", FINITE)
    a2_init: float = _number("start of a2, the residual's scale (12)", FINITE)

    def __post_init__(self) -> None:
        _check(self)

    def input_scale(self, k: float) -> float:
        """The factor s of the gates' input s x (9b) in a body amplified by k (14)."""
        return 1.0 / k if self.gate_input == "unit" else 1.0


# Sizes stop at EDSR's large model (Lim et al. 2017: 256 channels, 32 blocks), four and two times the registry's
# largest defaults, whose skeleton builds on the meta device in well under a second: a checkpoint's arguments are
# untrusted input (a million blocks hang every command that loads it).
@dataclass(frozen=True)
class ModelConfig:
    """Everything a registry model is built from. What the model takes no argument for is None: `binarization` of a
    full-precision net (and of bbcu-l and bbcu-m, which binarize as BBCU does), `attention` of all but edsr-proposed,
    `k` and `res_scale` where the model has none."""

    name: str
    scale: int = _choice("upscaling factor", SCALES)
    n_feats: int = _number("channels (width)", Interval(1, 256, integer=True))
    n_blocks: int = _number("residual blocks (depth)", Interval(1, 32, integer=True))
    k: float | None = _number(
        "amplification factor k (14), by which the output is divided", POSITIVE, none="BBCU's 130 * n_feats / 64"
    )
    res_scale: float | None = _number("factor of each full-precision residual block's branch", FINITE)
    binarization: Binarization | None = None
    attention: Attention | None = None

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_arguments(cls, name: str, arguments: dict) -> ModelConfig:
        """The config of registry model `name` from its flat arguments (a part none of whose fields is among them
        is None); a one-line ValueError for a value a field does not accept."""
        parts = {
            part: spec(**{f.name: arguments[f.name] for f in fields(spec)})
            if any(f.name in arguments for f in fields(spec))
            else None
            for part, spec in PARTS.items()
        }
        top = {f.name: arguments.get(f.name) for f in fields(cls) if f.name not in PARTS and f.name != "name"}
        return cls(name, **top, **parts)

    def arguments(self) -> dict:
        """Every field as a flat dict, the parts' fields inlined (a missing part adds nothing)."""
        flat = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in PARTS and f.name != "name"}
        for part in PARTS:
            spec = getattr(self, part)
            flat.update({} if spec is None else {f.name: getattr(spec, f.name) for f in fields(spec)})
        return flat


PARTS: dict[str, type] = {"binarization": Binarization, "attention": Attention}
OPTIONAL = ("res_scale",)  # None in a ModelConfig when the model has no such argument (its parts: None)

# BBCU's binarization (Xia et al. 2023): ApproxSign, alpha = mean|W| recomputed each step, BBCU's STE. Its nets use it
# (edsr-bbcu by default, bbcu-l and bbcu-m always), and so does a BBCUUnit or BinaryConv2d made without one.
BBCU_BINARIZATION = Binarization(sign_backward="approx", alpha_mode="mean", weight_grad="bbcu")


def argument_fields() -> dict[str, Field]:
    """Every flat argument name -> its field: ModelConfig's own and those of its parts."""
    own = {f.name: f for f in fields(ModelConfig) if f.name not in PARTS and f.name != "name"}
    return {**own, **{f.name: f for spec in PARTS.values() for f in fields(spec)}}


# ---- stored configs: versions and migrations ------------------------------------------------------------

VERSION = 3


def _gate_input_was_amplified(name: str, kwargs: dict) -> dict:
    """1 -> 2: gate_input (9b) arrived with the default "unit"; an edsr-proposed stored without it was built with
    gates that saw the amplified features."""
    return {"gate_input": "amplified", **kwargs} if name == "edsr-proposed" else kwargs


def _backward_is_sign_backward(name: str, kwargs: dict) -> dict:
    """2 -> 3: the activation sign's surrogate gradient, stored as "backward", has one name: sign_backward."""
    return {("sign_backward" if key == "backward" else key): value for key, value in kwargs.items()}


# MIGRATIONS[v - 1] turns the arguments of a version-v config into those of version v + 1.
MIGRATIONS: tuple[Callable[[str, dict], dict], ...] = (_gate_input_was_amplified, _backward_is_sign_backward)


def upgrade(stored: dict) -> dict:
    """A stored model config {"name", "kwargs", "version"} (no version: 1) as {"name", "kwargs"} of today's
    VERSION; a one-line ValueError for a version this binsr does not know."""
    version = stored.get("version", 1)
    if type(version) is not int or not 1 <= version <= VERSION:
        raise ValueError(f"model config version {version!r} is not valid; expected an integer in [1, {VERSION}]")
    name, kwargs = stored["name"], dict(stored["kwargs"])
    for migrate in MIGRATIONS[version - 1 :]:
        kwargs = migrate(name, kwargs)
    return {"name": name, "kwargs": kwargs}
