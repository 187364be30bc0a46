"""Attention modules that re-weight a feature map x by a map in (0, 1): out = x * m(x).

(9)  SqueezeExcitation (Hu et al. 2018):  m = sigmoid(W2 ReLU(W1 GAP(x)))        one weight per channel
(10) SpatialAttention:                    m = sigmoid(conv1x1_{c->1}(x))         one weight per pixel
(11) PixelAttention (PAN, Zhao 2020):     m = sigmoid(conv1x1_{c->c}(x))         one weight per channel and pixel

Each keeps its last map in `last_map` (detached) so notebooks can draw it.
"""

from __future__ import annotations

import torch
from torch import nn

ATTENTION_KINDS: tuple[str, ...] = ("none", "se", "spatial", "pixel")


class _Attention(nn.Module):
    """Shared forward: compute the map, remember it, multiply."""

    last_map: torch.Tensor | None = None

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.attention_map(x)
        self.last_map = m.detach()
        return x * m


class SqueezeExcitation(_Attention):
    """Eq. (9): channel weights from global average pooling through a bottleneck of c // reduction units."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Sigmoid(),
        )

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class SpatialAttention(_Attention):
    """Eq. (10): one weight per pixel, shared by all channels."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, 1, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


class PixelAttention(_Attention):
    """Eq. (11): one weight per channel and pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def attention_map(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(x))


def make_attention(kind: str, channels: int) -> nn.Module:
    """The attention module named `kind` (one of ATTENTION_KINDS); "none" is the identity."""
    builders = {
        "none": lambda: nn.Identity(),
        "se": lambda: SqueezeExcitation(channels),
        "spatial": lambda: SpatialAttention(channels),
        "pixel": lambda: PixelAttention(channels),
    }
    if kind not in builders:
        raise ValueError(f"attention kind {kind!r} is not valid; expected one of {', '.join(ATTENTION_KINDS)}")
    return builders[kind]()
