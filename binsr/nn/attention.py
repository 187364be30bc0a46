"""Attention modules that re-weight a feature map x by a gate map computed from x: out = x * gate(z(x)).

(9)  SqueezeExcitation (Hu et al. 2018):  z = W2 ReLU(W1 GAP(x))        one weight per channel
(10) SpatialAttention:                    z = conv1x1_{c->1}(x)         one weight per pixel
(11) PixelAttention (PAN, Zhao 2020):     z = conv1x1_{c->c}(x)         one weight per channel and pixel

The gate, eq. (9a), is the part that decides whether attention can hurt a residual network:

    "sigmoid":   gate(z) = sigmoid(z)       in (0, 1): can only attenuate; 0.5 at z = 0 (the papers' form)
    "2sigmoid":  gate(z) = 2 sigmoid(z)     in (0, 2): 1 at z = 0, so it can start at and return to identity

`gate_init` sets where the map starts: None keeps PyTorch's default initialisation of the last layer (the papers);
a value g zeroes the last layer's weights and sets its bias to gate^-1(g), so the map is exactly g everywhere at
initialisation (g = 1 with "2sigmoid": the module starts as the identity).

What the gate sees, eq. (9b): out = x * gate(z(s x)). In a body amplified by k (14) the features are about k
times larger than the image; s = 1/k lets the logits see them at unit scale, so a gate's weights change its map
as fast as in an unamplified net. The map still multiplies x itself. s = 1 (the papers) is the default. A model
chooses s by its Attention's `gate_input` (`binsr.nn.config`); a module holds the number, `input_scale`.

The modules here default to the papers' gate (sigmoid, PyTorch's init, s = 1); a model's attentive units pass what
its config chose (`binsr.nn.blocks.AttentiveBinaryUnit`).

The gate is a submodule (`.gate`), so a forward hook on it sees the map; nothing is stored in the module.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from binsr.nn.config import ATTENTION_KINDS, GATE_FORMS


class Gate(nn.Module):
    """Eq. (9a): sigmoid(z) or 2 sigmoid(z), elementwise."""

    def __init__(self, form: str = "sigmoid"):
        super().__init__()
        if form not in GATE_FORMS:
            raise ValueError(f"gate form {form!r} is not valid; expected one of {', '.join(GATE_FORMS)}")
        self.form = form
        self.height = 2.0 if form == "2sigmoid" else 1.0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.height * torch.sigmoid(z)

    def inverse(self, value: float) -> float:
        """The logit z with gate(z) = value."""
        if not 0 < value < self.height:
            expected = f"expected (0, {self.height})"
            raise ValueError(f"gate_init={value} is out of range for the {self.form!r} gate; {expected}")
        p = value / self.height
        return math.log(p / (1 - p))

    def extra_repr(self) -> str:
        return repr(self.form)


class NoAttention(nn.Identity):
    """Kind "none": x, or scale * x."""

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        return x if scale is None else scale * x


class _Attention(nn.Module):
    """Shared forward x * gate(logits(s x)), eq. (9b); subclasses define `logits` and `last_conv`."""

    gate: Gate
    input_scale: float

    def __init__(self, input_scale: float = 1.0):
        super().__init__()
        if not (math.isfinite(input_scale) and input_scale > 0):
            raise ValueError(f"input_scale={input_scale}; expected a positive finite number")
        self.input_scale = float(input_scale)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        """The gate map, broadcastable against x: (N, C, 1, 1), (N, 1, H, W) or (N, C, H, W)."""
        return self.gate(self.logits(x if self.input_scale == 1 else x * self.input_scale))

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        """x * map, or scale * x * map computed as x * (scale * map): a scalar on the (often tiny) map costs no
        pass over x, and its gradient shares the map's reduction (AttentiveBinaryUnit's a1, a2)."""
        gate = self.attention_map(x)
        return x * (gate if scale is None else scale * gate)

    def _start_at(self, gate_init: float | None) -> None:
        if gate_init is None:
            return
        last = self.last_conv()
        nn.init.zeros_(last.weight)
        nn.init.constant_(last.bias, self.gate.inverse(gate_init))

    def last_conv(self) -> nn.Conv2d:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return "" if self.input_scale == 1 else f"input_scale={self.input_scale!r}"


class SqueezedConv(nn.Conv2d):
    """A 1x1 conv on a squeezed (N, C, 1, 1) map, computed as the matrix product it is. Same parameters and
    state-dict keys as nn.Conv2d; oneDNN's conv call costs about 0.5 ms at this size, the product microseconds,
    which made the compiled SE training step 7 % faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[2:] != (1, 1):
            raise ValueError(f"SqueezedConv expected an (N, C, 1, 1) map, got shape {tuple(x.shape)}")
        return F.linear(x.flatten(1), self.weight.flatten(1), self.bias)[:, :, None, None]


class SqueezeExcitation(_Attention):
    """Eq. (9): channel weights from global average pooling through a bottleneck of c // reduction units."""

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        gate: str = "sigmoid",
        gate_init: float | None = None,
        input_scale: float = 1.0,
    ):
        super().__init__(input_scale)
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = SqueezedConv(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = SqueezedConv(hidden, channels, 1)
        self.gate = Gate(gate)
        self._start_at(gate_init)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.pool(x))))

    def last_conv(self) -> nn.Conv2d:
        return self.fc2


class _ConvAttention(_Attention):
    """z = conv1x1_{c -> maps}(x): the shared form of (10) and (11)."""

    maps_per_channel: bool

    def __init__(self, channels: int, gate: str = "sigmoid", gate_init: float | None = None, input_scale: float = 1.0):
        super().__init__(input_scale)
        self.conv = nn.Conv2d(channels, channels if self.maps_per_channel else 1, 1)
        self.gate = Gate(gate)
        self._start_at(gate_init)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def last_conv(self) -> nn.Conv2d:
        return self.conv


class SpatialAttention(_ConvAttention):
    """Eq. (10): one weight per pixel, shared by all channels."""

    maps_per_channel = False


class PixelAttention(_ConvAttention):
    """Eq. (11): one weight per channel and pixel."""

    maps_per_channel = True


def make_attention(
    kind: str, channels: int, gate: str = "sigmoid", gate_init: float | None = None, input_scale: float = 1.0
) -> nn.Module:
    """The attention module named `kind` (one of ATTENTION_KINDS) with gate (9a) seeing s x (9b); "none" is the
    identity. Each is called as module(x) or module(x, scale)."""
    builders = {"se": SqueezeExcitation, "spatial": SpatialAttention, "pixel": PixelAttention}
    if kind == "none":
        return NoAttention()
    if kind not in builders:
        raise ValueError(f"attention kind {kind!r} is not valid; expected one of {', '.join(ATTENTION_KINDS)}")
    return builders[kind](channels, gate=gate, gate_init=gate_init, input_scale=input_scale)
