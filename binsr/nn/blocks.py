"""Residual blocks: EDSR's full-precision block, BBCU's binary block, and the preprint's attentive binary block.

(8)  BBCU unit:            x <- RPReLU(BinaryConv(RSign(x))) + x                          (seed eq. 8)
(12) attentive unit:       x <- a1 * Att_b(RPReLU(BinaryConv(RSign(x)))) + a2 * Att_r(x)
     With Att_b = Att_r = identity and a1 = a2 = 1 it is exactly the BBCU unit; so it is at initialisation with
     the gates (9a) started at 1 (gate "2sigmoid", gate_init 1) and a1 = a2 = 1.

The binary convs take a `Binarization` and the attentive unit an `Attention` (`binsr.nn.config`), whole: the
units state no choice of their own, except that a BBCU unit made without one binarizes as BBCU does.
(13) binary upsampling unit (BBCU-M):  x <- PixelShuffle(RPReLU(BinaryConv(RSign(x)))) + nearest_up(x)

The full-precision residual is added outside RPReLU so negative values survive; a block is two units with no
block-level skip, as in BBCU's released code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from binsr.nn.attention import make_attention
from binsr.nn.binary import BinaryConv2d
from binsr.nn.config import BBCU_BINARIZATION, Attention, Binarization


class ResBlock(nn.Module):
    """EDSR's block: x + res_scale * conv(ReLU(conv(x)))."""

    def __init__(self, n_feats: int, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.res_scale = res_scale

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(residual branch, skip) whose sum is the output."""
        return self.body(x) * self.res_scale, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class BBCUUnit(nn.Module):
    """Eq. (8): x + RPReLU(BinaryConv(RSign(x)))."""

    def __init__(self, n_feats: int, binarization: Binarization = BBCU_BINARIZATION):
        super().__init__()
        self.conv = BinaryConv2d(n_feats, n_feats, 3, binarization)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(binary branch, full-precision skip) whose sum is the output."""
        return self.conv(x), x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


class AttentiveBinaryUnit(nn.Module):
    """Eq. (12): a1 * Att_b(RPReLU(BinaryConv(RSign(x)))) + a2 * Att_r(x), a1 and a2 learnable scalars.

    In the preprint a1 and a2 (both 1 at the start) replace BBCU's amplification factor k: they set the balance
    between the binary branch and the full-precision residual. `attention` chooses the kinds, the gate (9a), its
    start and the start of a1 and a2; the unit sits in a body amplified by `k` (14, 1: none), of which the gates'
    logits see what `attention.gate_input` says (9b).
    """

    def __init__(
        self, n_feats: int, binarization: Binarization, attention: Attention, k: float = 1.0, learn_scales: bool = True
    ):
        super().__init__()
        self.conv = BinaryConv2d(n_feats, n_feats, 3, binarization)
        gate, start, input_scale = attention.gate, attention.gate_init, attention.input_scale(k)
        self.att_bin = make_attention(attention.att_bin, n_feats, gate, start, input_scale)
        self.att_res = make_attention(attention.att_res, n_feats, gate, start, input_scale)
        self.a1 = nn.Parameter(torch.tensor(float(attention.a1_init)), requires_grad=learn_scales)
        self.a2 = nn.Parameter(torch.tensor(float(attention.a2_init)), requires_grad=learn_scales)

    def branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a1 Att_b(binary branch), a2 Att_r(x)) whose sum is the output."""
        return self.att_bin(self.conv(x), self.a1), self.att_res(x, self.a2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        binary, skip = self.branches(x)
        return binary + skip


class BBCUBlock(nn.Sequential):
    """Two BBCU units (8) in a row."""

    def __init__(self, n_feats: int, **unit_kwargs):
        super().__init__(*(BBCUUnit(n_feats, **unit_kwargs) for _ in range(2)))


class AttentiveBinaryBlock(nn.Sequential):
    """Two attentive binary units (12) in a row: the preprint's block; keyword arguments as AttentiveBinaryUnit."""

    def __init__(self, n_feats: int, **unit_kwargs):
        super().__init__(*(AttentiveBinaryUnit(n_feats, **unit_kwargs) for _ in range(2)))


class BinaryUpsampleUnit(nn.Module):
    """Eq. (13), BBCU-M's binary upsampler: the residual of a c -> c*s*s conv is the nearest-upsampled input."""

    def __init__(self, n_feats: int, factor: int, binarization: Binarization = BBCU_BINARIZATION):
        super().__init__()
        self.factor = factor
        self.conv = BinaryConv2d(n_feats, n_feats * factor * factor, 3, binarization)
        self.shuffle = nn.PixelShuffle(factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x)) + F.interpolate(x, scale_factor=self.factor, mode="nearest")
