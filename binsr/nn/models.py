"""Backbones (EDSR, SRResNet-style BBCU reference nets) and the model registry.

Every model maps a float image in [0, 1], shape (N, 3, h, w), to (N, 3, s*h, s*w) and carries `scale` and
`config` (registry name + full arguments, flat) so a checkpoint can rebuild it. A builder takes the model's
`binsr.nn.config.ModelConfig` whole; the registry `MODELS` states every argument of each model with its default.

(14) amplification (BBCU): the network sees k * x and its output is divided by k, so every full-precision
     residual carries amplitude ~k while a binary branch's amplitude is set by alpha alone. BBCU uses
     k = 130 at 64 channels, k = 130 * n / 64 in general. The preprint's attentive net uses k = 1 (a1, a2 take its
     role); binsr's default keeps BBCU's k and starts every attention gate at 1, so at initialisation the
     attentive net computes exactly EDSR-BBCU (see `edsr_proposed` and `PREPRINT_LITERAL`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial

import torch
from torch import nn

from binsr.nn.binary import mean_abs_scale
from binsr.nn.blocks import AttentiveBinaryBlock, BBCUBlock, BBCUUnit, BinaryUpsampleUnit, ResBlock
from binsr.nn.config import BBCU_BINARIZATION, SCALES, ModelConfig, argument_fields, expected, upgrade

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


def _k(config: ModelConfig) -> float:
    """The amplification factor (14): the config's, or BBCU's for its width."""
    return bbcu_k(config.n_feats) if config.k is None else config.k


def edsr_fp(c: ModelConfig) -> nn.Module:
    """EDSR with full-precision residual blocks."""
    return EDSR(c.scale, c.n_feats, c.n_blocks, partial(ResBlock, res_scale=c.res_scale))


def edsr_bbcu(c: ModelConfig) -> nn.Module:
    """EDSR with BBCU blocks (8)."""
    return EDSR(c.scale, c.n_feats, c.n_blocks, partial(BBCUBlock, binarization=c.binarization), k=_k(c))


def edsr_proposed(c: ModelConfig) -> nn.Module:
    """EDSR with the preprint's attentive binary blocks (12).

    With BBCU's k and gate "2sigmoid" started at 1 every unit begins as a BBCU unit (8). gate_input (9b): "unit"
    gates see the body's features divided by k, "amplified" gates see them as they are (k times the image's scale:
    one Adam step then throws spatial and pixel gates towards 0 and 2; README).
    `create_model("edsr-proposed", **PREPRINT_LITERAL)` is the preprint's reading (k = 1, sigmoid gates)."""
    k = _k(c)
    block = partial(AttentiveBinaryBlock, binarization=c.binarization, attention=c.attention, k=k)
    return EDSR(c.scale, c.n_feats, c.n_blocks, block, k=k)


def srresnet_fp(c: ModelConfig) -> nn.Module:
    """SRResNet (no BN) with full-precision residual blocks: BBCU's full-precision reference."""
    return SRResNet(c.scale, c.n_feats, c.n_blocks, ResBlock)


def bbcu_l(c: ModelConfig) -> nn.Module:
    """BBCU-L: binary body (BBCU's binarization), full-precision upsampler and conv_hr (BBCU Table 1)."""
    return SRResNet(c.scale, c.n_feats, c.n_blocks, BBCUBlock, k=_k(c))


def bbcu_m(c: ModelConfig) -> nn.Module:
    """BBCU-M: like BBCU-L with the upsampler and conv_hr binarized too (BBCU Table 1)."""
    return SRResNet(c.scale, c.n_feats, c.n_blocks, BBCUBlock, k=_k(c), binary_tail=True)


@dataclass(frozen=True)
class Entry:
    """A registry model: its builder and every argument it takes, with its default (the only place it is stated)."""

    build: Callable[[ModelConfig], nn.Module]
    defaults: dict


# k None is BBCU's 130 * n_feats / 64 (bbcu_k). The argument names and what each accepts: binsr.nn.config.
MODELS: dict[str, Entry] = {
    "edsr-fp": Entry(edsr_fp, {"scale": 2, "n_feats": 64, "n_blocks": 16, "res_scale": 1.0}),
    "edsr-bbcu": Entry(edsr_bbcu, {"scale": 2, "n_feats": 64, "n_blocks": 16, "k": None, **asdict(BBCU_BINARIZATION)}),
    "edsr-proposed": Entry(edsr_proposed, {
        "scale": 2, "n_feats": 64, "n_blocks": 16, "k": None,
        "sign_backward": "approx", "alpha_mode": "learnable", "weight_grad": "bbcu",
        "att_bin": "se", "att_res": "se", "gate": "2sigmoid", "gate_init": 1.0, "gate_input": "unit",
        "a1_init": 1.0, "a2_init": 1.0,
    }),
    "srresnet-fp": Entry(srresnet_fp, {"scale": 4, "n_feats": 64, "n_blocks": 16}),
    "bbcu-l": Entry(bbcu_l, {"scale": 4, "n_feats": 64, "n_blocks": 16, "k": None}),
    "bbcu-m": Entry(bbcu_m, {"scale": 4, "n_feats": 64, "n_blocks": 16, "k": None}),
}  # fmt: skip

# The preprint read literally: no amplification, a1 = a2 = 1, sigmoid gates with PyTorch's default init.
PREPRINT_LITERAL = {"k": 1.0, "a1_init": 1.0, "a2_init": 1.0, "gate": "sigmoid", "gate_init": None}


def model_config(name: str, **kwargs) -> ModelConfig:
    """The ModelConfig that `create_model(name, **kwargs)` builds (defaults filled in); a one-line ValueError for
    an unknown name or argument, or a value of the wrong type or out of range."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    defaults = MODELS[name].defaults
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(f"model {name!r} has no argument {', '.join(unknown)}; valid: {', '.join(defaults)}")
    arguments = {**defaults, **kwargs}
    settings = argument_fields()
    for key, value in arguments.items():  # each argument of this model, None included where it means nothing
        wanted = expected(settings[key], value)
        if wanted is not None:
            raise ValueError(f"{key}={value!r} is not valid; expected {wanted}")
    return ModelConfig.from_arguments(name, arguments)


def _arguments(config: ModelConfig) -> dict:
    """The registry arguments of `config`'s model, flat, in the registry's order."""
    flat = config.arguments()
    return {key: flat[key] for key in MODELS[config.name].defaults}


def model_arguments(name: str, **kwargs) -> dict:
    """The full argument dict (defaults filled in) that `create_model(name, ...)` would use; errors as
    `model_config`."""
    return _arguments(model_config(name, **kwargs))


def complete_config(stored: dict) -> dict:
    """A stored model config {"name", "kwargs"[, "version"]} brought to today's arguments (`binsr.nn.config.upgrade`)
    with every default filled in, so that it compares equal to `create_model`'s `model.config` and rebuilds the same
    model; an unknown name is returned as it is."""
    if stored["name"] not in MODELS:
        return stored
    upgraded = upgrade(stored)
    return {"name": upgraded["name"], "kwargs": model_arguments(upgraded["name"], **upgraded["kwargs"])}


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. `create_model("edsr-bbcu", scale=2, n_feats=32, n_blocks=8)`."""
    config = model_config(name, **kwargs)
    model = MODELS[name].build(config)
    model.config = {"name": name, "kwargs": _arguments(config)}
    return model
