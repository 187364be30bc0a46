"""Backbones (EDSR, SRResNet-style BBCU reference nets) and the model registry.

Every model maps a float image in [0, 1], shape (N, 3, h, w), to (N, 3, s*h, s*w) and carries `scale` and
`config` (registry name + full arguments) so a checkpoint can rebuild it.

(14) amplification (BBCU): the network sees k * x and its output is divided by k, so every full-precision
     residual carries amplitude ~k while a binary branch's amplitude is set by alpha alone. BBCU uses
     k = 130 at 64 channels, k = 130 * n / 64 in general. The preprint's attentive net uses k = 1 (a1, a2 take its
     role); binsr's default keeps BBCU's k and starts every attention gate at 1, so at initialisation the
     attentive net computes exactly EDSR-BBCU (see `edsr_proposed` and `PREPRINT_LITERAL`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from functools import cache, partial

import torch
from torch import nn

from binsr.base.intervals import FINITE, POSITIVE, Interval
from binsr.nn.attention import ATTENTION_KINDS, GATE_FORMS
from binsr.nn.binary import ALPHA_MODES, SIGN_BACKWARDS, WEIGHT_GRADS, mean_abs_scale
from binsr.nn.blocks import AttentiveBinaryBlock, BBCUBlock, BBCUUnit, BinaryUpsampleUnit, ResBlock

SCALES = (2, 3, 4)
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def bbcu_k(n_feats: int) -> float:
    """BBCU's amplification factor: 130 at 64 channels, proportional to the width."""
    return 130.0 * n_feats / 64


def _check_scale(scale: int) -> None:
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r} is not valid; expected one of {', '.join(map(str, SCALES))}")


def _upsample_stages(scale: int) -> list[int]:
    """x4 is two x2 pixel-shuffle stages; x2 and x3 are one stage."""
    return [2, 2] if scale == 4 else [scale]


class EDSR(nn.Module):
    """EDSR (Lim et al. 2017): mean shift, head conv, body of blocks + conv with a long skip, pixel-shuffle
    upsampler, tail conv. Head, body conv, upsampler and tail stay full precision; `make_block` decides
    what the body is made of. Eq. (14) with gain k."""

    def __init__(
        self,
        scale: int,
        n_feats: int,
        n_blocks: int,
        make_block: Callable[[int], nn.Module],
        k: float = 1.0,
    ):
        super().__init__()
        _check_scale(scale)
        self.scale, self.k = scale, float(k)
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        blocks = [make_block(n_feats) for _ in range(n_blocks)]
        self.body = nn.Sequential(*blocks, nn.Conv2d(n_feats, n_feats, 3, padding=1))
        stages: list[nn.Module] = []
        for factor in _upsample_stages(scale):
            stages += [nn.Conv2d(n_feats, n_feats * factor * factor, 3, padding=1), nn.PixelShuffle(factor)]
        self.upsampler = nn.Sequential(*stages)
        self.tail = nn.Conv2d(n_feats, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head((x - self.rgb_mean) * self.k)
        x = x + self.body(x)
        return self.tail(self.upsampler(x)) / self.k + self.rgb_mean


class SRResNet(nn.Module):
    """SRResNet without batch norm, the backbone of BBCU's reference nets (BBCU-L, BBCU-M).

    k*x -> conv_first + LeakyReLU -> body -> upsampling -> conv_hr + LeakyReLU -> conv_last,
    plus the bilinearly upsampled input, then / k.
    With `binary_tail` (BBCU-M) each upsampling stage is a binary upsampling unit (13) and conv_hr a BBCU unit (8).
    """

    def __init__(
        self,
        scale: int,
        n_feats: int,
        n_blocks: int,
        make_block: Callable[[int], nn.Module],
        k: float = 1.0,
        binary_tail: bool = False,
    ):
        super().__init__()
        _check_scale(scale)
        self.scale, self.k = scale, float(k)
        self.conv_first = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Sequential(*(make_block(n_feats) for _ in range(n_blocks)))
        lrelu = partial(nn.LeakyReLU, 0.1, inplace=True)
        if binary_tail:
            self.upsampler = nn.Sequential(*(BinaryUpsampleUnit(n_feats, f) for f in _upsample_stages(scale)))
            self.conv_hr = BBCUUnit(n_feats)
            # BBCU-M's released code scales these binary convs' init by 0.1 too (not the body's).
            for unit in (*self.upsampler, self.conv_hr):
                _scaled_kaiming_(unit.conv, 0.1)
        else:
            stages: list[nn.Module] = []
            for factor in _upsample_stages(scale):
                conv = nn.Conv2d(n_feats, n_feats * factor * factor, 3, padding=1)
                stages += [conv, nn.PixelShuffle(factor), lrelu()]
            self.upsampler = nn.Sequential(*stages)
            self.conv_hr = nn.Conv2d(n_feats, n_feats, 3, padding=1)
        self.conv_last = nn.Conv2d(n_feats, 3, 3, padding=1)
        self.lrelu = lrelu()
        # An nn.Module rather than F.interpolate so `binsr.nn.summary` sees (and counts) the image-space skip.
        self.image_skip = nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _scaled_kaiming_(m, 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.k
        out = self.upsampler(self.body(self.lrelu(self.conv_first(x))))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        return (out + self.image_skip(x)) / self.k


def _scaled_kaiming_(conv: nn.Module, gain: float) -> None:
    """BasicSR's default_init_weights: Kaiming-normal scaled by `gain`, zero bias; keeps deep residual nets stable.
    `conv` is an nn.Conv2d or a BinaryConv2d (whose learnable alpha, if any, follows the new weights)."""
    nn.init.kaiming_normal_(conv.weight)
    conv.weight.data.mul_(gain)
    if getattr(conv, "bias", None) is not None:
        nn.init.zeros_(conv.bias)
    if getattr(conv, "alpha", None) is not None:
        conv.alpha.data.copy_(mean_abs_scale(conv.weight))


# ---- registry -------------------------------------------------------------------------------------------


def edsr_fp(scale: int = 2, n_feats: int = 64, n_blocks: int = 16, res_scale: float = 1.0) -> nn.Module:
    """EDSR with full-precision residual blocks."""
    return EDSR(scale, n_feats, n_blocks, partial(ResBlock, res_scale=res_scale))


def edsr_bbcu(
    scale: int = 2,
    n_feats: int = 64,
    n_blocks: int = 16,
    k: float | None = None,
    alpha_mode: str = "mean",
    backward: str = "approx",
    weight_grad: str = "bbcu",
) -> nn.Module:
    """EDSR with BBCU blocks (8); k defaults to BBCU's 130 * n_feats / 64."""
    block = partial(BBCUBlock, alpha_mode=alpha_mode, backward=backward, weight_grad=weight_grad)
    return EDSR(scale, n_feats, n_blocks, block, k=bbcu_k(n_feats) if k is None else k)


GATE_INPUTS: tuple[str, ...] = ("amplified", "unit")  # what the attention gates see (9b): k x or x

# The preprint read literally: no amplification, a1 = a2 = 1, sigmoid gates with PyTorch's default init.
PREPRINT_LITERAL = {"k": 1.0, "a1_init": 1.0, "a2_init": 1.0, "gate": "sigmoid", "gate_init": None}


def edsr_proposed(
    scale: int = 2,
    n_feats: int = 64,
    n_blocks: int = 16,
    att_bin: str = "se",
    att_res: str = "se",
    k: float | None = None,
    alpha_mode: str = "learnable",
    backward: str = "approx",
    a1_init: float = 1.0,
    a2_init: float = 1.0,
    gate: str = "2sigmoid",
    gate_init: float | None = 1.0,
    weight_grad: str = "bbcu",
    gate_input: str = "unit",
) -> nn.Module:
    """EDSR with the preprint's attentive binary blocks (12); attention kinds from ATTENTION_KINDS.

    k defaults to BBCU's (None); with gate "2sigmoid" started at 1 every unit begins as a BBCU unit (8).
    gate_input (9b): "unit" gates see the body's features divided by k, "amplified" gates see them as they are
    (k times the image's scale: one Adam step then throws spatial and pixel gates towards 0 and 2; README).
    `create_model("edsr-proposed", **PREPRINT_LITERAL)` is the preprint's reading (k = 1, sigmoid gates)."""
    for name, kind in (("att_bin", att_bin), ("att_res", att_res)):
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"{name}={kind!r} is not valid; expected one of {', '.join(ATTENTION_KINDS)}")
    if gate_input not in GATE_INPUTS:
        raise ValueError(f"gate_input={gate_input!r} is not valid; expected one of {', '.join(GATE_INPUTS)}")
    k = bbcu_k(n_feats) if k is None else k
    block = partial(
        AttentiveBinaryBlock, att_bin=att_bin, att_res=att_res, alpha_mode=alpha_mode, backward=backward,
        a1_init=a1_init, a2_init=a2_init, gate=gate, gate_init=gate_init, weight_grad=weight_grad,
        gate_input_scale=1.0 / k if gate_input == "unit" else 1.0,
    )  # fmt: skip
    return EDSR(scale, n_feats, n_blocks, block, k=k)


def srresnet_fp(scale: int = 4, n_feats: int = 64, n_blocks: int = 16) -> nn.Module:
    """SRResNet (no BN) with full-precision residual blocks: BBCU's full-precision reference."""
    return SRResNet(scale, n_feats, n_blocks, ResBlock)


def bbcu_l(scale: int = 4, n_feats: int = 64, n_blocks: int = 16, k: float | None = None) -> nn.Module:
    """BBCU-L: binary body, full-precision upsampler and conv_hr (BBCU Table 1)."""
    return SRResNet(scale, n_feats, n_blocks, BBCUBlock, k=bbcu_k(n_feats) if k is None else k)


def bbcu_m(scale: int = 4, n_feats: int = 64, n_blocks: int = 16, k: float | None = None) -> nn.Module:
    """BBCU-M: like BBCU-L with the upsampler and conv_hr binarized too (BBCU Table 1)."""
    return SRResNet(scale, n_feats, n_blocks, BBCUBlock, k=bbcu_k(n_feats) if k is None else k, binary_tail=True)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "edsr-fp": edsr_fp,
    "edsr-bbcu": edsr_bbcu,
    "edsr-proposed": edsr_proposed,
    "srresnet-fp": srresnet_fp,
    "bbcu-l": bbcu_l,
    "bbcu-m": bbcu_m,
}


# What a model argument may be, checked before anything is built: a checkpoint's arguments are untrusted input (a
# million blocks hang every command that loads it). Types come from the registry's annotations (a float argument
# is any finite number); sizes stop at EDSR's large model (Lim et al. 2017: 256 channels, 32 blocks), four and two
# times the registry's largest defaults, whose skeleton builds on the meta device in well under a second.
LIMITS: dict[str, Interval] = {
    "n_feats": Interval(1, 256, integer=True), "n_blocks": Interval(1, 32, integer=True),
    "k": POSITIVE,  # the output is divided by it
}  # fmt: skip
CHOICES: dict[str, tuple] = {
    "scale": SCALES, "att_bin": ATTENTION_KINDS, "att_res": ATTENTION_KINDS, "alpha_mode": ALPHA_MODES,
    "backward": SIGN_BACKWARDS, "weight_grad": WEIGHT_GRADS, "gate": GATE_FORMS, "gate_input": GATE_INPUTS,
}  # fmt: skip


@cache
def _signature(name: str) -> inspect.Signature:
    return inspect.signature(MODELS[name], eval_str=True)


def _expected(key: str, value: object, annotation: object) -> str | None:
    """What argument `key` must be when `value` is not it (None when it is); `annotation` is its declared type."""
    kinds = typing.get_args(annotation) or (annotation,)
    if value is None and type(None) in kinds:
        return None
    if key in CHOICES:
        choices = CHOICES[key]
        fits = type(value) is type(choices[0]) and value in choices  # 2.0 == 2, True == 1: not a choice
        return None if fits else f"one of {', '.join(map(str, choices))}"
    if key not in LIMITS and float not in kinds:
        raise TypeError(f"argument {key} is annotated {annotation}; binsr.nn.models has no limits for it")
    valid = LIMITS.get(key, FINITE)
    return None if value in valid else f"{valid}" + (" or None" if type(None) in kinds else "")


def model_arguments(name: str, **kwargs) -> dict:
    """The full argument dict (defaults filled in) that `create_model(name, ...)` would use; a one-line
    ValueError for an unknown name or argument, or a value of the wrong type or out of range."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    signature = _signature(name)
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        valid = ", ".join(signature.parameters)
        raise ValueError(f"model {name!r} has no argument {', '.join(unknown)}; valid: {valid}")
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    for key, value in bound.arguments.items():
        expected = _expected(key, value, signature.parameters[key].annotation)
        if expected is not None:
            raise ValueError(f"{key}={value!r} is not valid; expected {expected}")
    return dict(bound.arguments)


# Arguments added with a default other than the behaviour before them: a config stored without the argument was
# built with this value, not with today's default.
LEGACY_ARGUMENTS: dict[str, dict] = {"edsr-proposed": {"gate_input": "amplified"}}


def complete_config(config: dict) -> dict:
    """A stored model config {"name", "kwargs"} with every argument binsr added since it was written set to the
    value the model was built with (LEGACY_ARGUMENTS, else the default), so that it compares equal to
    `create_model`'s `model.config` and rebuilds the same model; an unknown name is returned as it is."""
    if config["name"] not in MODELS:
        return config
    legacy = {key: value for key, value in LEGACY_ARGUMENTS.get(config["name"], {}).items()
              if key not in config["kwargs"]}  # fmt: skip
    return {"name": config["name"], "kwargs": model_arguments(config["name"], **legacy, **config["kwargs"])}


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. `create_model("edsr-bbcu", scale=2, n_feats=32, n_blocks=8)`."""
    arguments = model_arguments(name, **kwargs)
    model = MODELS[name](**arguments)
    model.config = {"name": name, "kwargs": arguments}
    return model

