"""Binarization primitives: sign with a surrogate gradient, RSign, weight binarization, RPReLU, BinaryConv2d.

Equations are numbered as in the notebooks (and the preprint where it has a number):

(1)  sign(x)   = +1 if x > 0 else -1                      ties (x == 0) and NaN go to -1
(2)  clipped straight-through:  d sign/dx = 1{|x| <= 1}
(3)  Bi-Real ApproxSign:        d sign/dx = 2 + 2x on [-1, 0),  2 - 2x on [0, 1),  0 elsewhere
(4)  identity straight-through: d sign/dx = 1
(5)  RSign:    b_k = sign(x_k - t_k)                      learnable threshold t_k per channel (seed eq. 5)
(6)  weights:  W_b = alpha_l * sign(W_l)                  per output channel l, STE through clamp(W, -1, 1)
(6a) weight gradient: "bbcu"   dL/dW = dL/dW_b * 1{|W| <= 1}                 (BBCU's released code)
                      "scaled" dL/dW = alpha * dL/dW_b * 1{|W| <= 1}         (alpha applied after the conv)
(7)  RPReLU:   f(x_k) = PReLU_{beta_k}(x_k - gamma_k) + zeta_k   (seed eq. 7)

The convention "+1 iff x > threshold" is the one the bit-packing engine (`binsr.engine.xnor`) reproduces bit for bit.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from binsr.nn.config import BBCU_BINARIZATION, SIGN_BACKWARDS, Binarization, SignBackward


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {', '.join(choices)}")


def sign_derivative(x: torch.Tensor, sign_backward: SignBackward) -> torch.Tensor:
    """The surrogate derivative d sign(x)/dx of eq. (2), (3) or (4), evaluated at x."""
    _check_choice("sign_backward", sign_backward, SIGN_BACKWARDS)
    if sign_backward == "identity":
        return torch.ones_like(x)
    if sign_backward == "clipped":
        return (x.abs() <= 1).to(x.dtype)
    return torch.where(x.abs() < 1, 2 - 2 * x.abs(), torch.zeros_like(x))


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sign_backward: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.sign_backward = sign_backward
        return torch.where(x > 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_out * sign_derivative(x, ctx.sign_backward), None


def binary_sign(x: torch.Tensor, sign_backward: SignBackward = BBCU_BINARIZATION.sign_backward) -> torch.Tensor:
    """Eq. (1) forward (+1 iff x > 0, else -1) with the surrogate gradient `sign_backward`, eq. (2)-(4)."""
    _check_choice("sign_backward", sign_backward, SIGN_BACKWARDS)
    return _SignSTE.apply(x, sign_backward)


class RSign(nn.Module):
    """Eq. (5): b_k = +1 if x_k > t_k else -1, with a learnable per-channel threshold t_k (zero init).

    ReActNet's RSign; BBCU's code writes it as a learnable bias added before sign (t = -bias).
    """

    def __init__(self, channels: int, sign_backward: SignBackward = BBCU_BINARIZATION.sign_backward):
        super().__init__()
        _check_choice("sign_backward", sign_backward, SIGN_BACKWARDS)
        self.threshold = nn.Parameter(torch.zeros(channels))
        self.sign_backward = sign_backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x - t > 0 exactly when x > t in IEEE arithmetic, so the packer may compare x > t directly.
        return binary_sign(x - self.threshold.view(1, -1, 1, 1), self.sign_backward)

    def extra_repr(self) -> str:
        return f"{self.threshold.numel()}, sign_backward={self.sign_backward!r}"


class _WeightSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w: torch.Tensor, grad_scale: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(w, grad_scale)
        return torch.where(w > 0, 1.0, -1.0).to(w.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        w, grad_scale = ctx.saved_tensors
        scale = grad_scale.view(-1, *([1] * (w.dim() - 1))) if w.dim() else grad_scale  # a 0-d w: one scale
        return grad_out * scale * (w.abs() <= 1).to(grad_out.dtype), None  # gradient of clamp(w, -1, 1)


def sign_weight(w: torch.Tensor, grad_scale: torch.Tensor | None = None) -> torch.Tensor:
    """sign(W) of eq. (6), +1 iff w > 0, with the straight-through gradient of clamp(W, -1, 1), multiplied per
    output channel by `grad_scale` (default 1)."""
    if grad_scale is None:
        grad_scale = torch.ones(w.shape[:1], dtype=w.dtype, device=w.device)  # () for a single 0-d weight
    return _WeightSign.apply(w, grad_scale.detach())


def mean_abs_scale(w: torch.Tensor) -> torch.Tensor:
    """alpha_l = mean |W_l| over each output channel: the L2-optimal scale for sign(W_l) (XNOR-Net)."""
    return w.detach().abs().mean(dim=tuple(range(1, w.dim())))


class RPReLU(nn.Module):
    """Eq. (7): f(x_k) = PReLU_{beta_k}(x_k - gamma_k) + zeta_k, all per channel; beta init 0.25, shifts 0."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.full((channels,), 0.25))
        self.zeta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x - self.gamma.view(1, -1, 1, 1)
        return F.prelu(shifted, self.beta) + self.zeta.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.beta.numel()}"


class BinaryConv2d(nn.Module):
    """RSign (5) -> conv with alpha * sign(W) (6) -> optional RPReLU (7).

        y = RPReLU( alpha * conv(RSign(x), sign(W)) )

    The ±1 activations are zero-padded exactly as `F.conv2d` does. The integer conv of ±1 tensors is exact
    in float32, and alpha is applied afterwards with one rounding, so the XNOR engine can match it bit for bit.

    `binarization` (a `binsr.nn.config.Binarization`, by default BBCU's) chooses the RSign's surrogate gradient and:
    alpha_mode "mean": alpha = mean|W_l|, recomputed and detached each step (BBCU);
    alpha_mode "learnable": alpha is a parameter initialised to mean|W_l| (Ma et al. 2019, the preprint).

    weight_grad (6a) "bbcu" divides the latent-weight gradient by alpha, which gives exactly BBCU's STE (it
    convolves with alpha * sign(W) and passes dL/dW_b straight to W); "scaled" keeps the factor alpha.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        binarization: Binarization = BBCU_BINARIZATION,
        rprelu: bool = True,
    ):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size={kernel_size} must be odd ('same' padding)")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.padding = kernel_size // 2
        self.binarization = binarization
        self.rsign = RSign(in_channels, binarization.sign_backward)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # nn.Conv2d's default, as in BBCU
        self.alpha = None
        if binarization.alpha_mode == "learnable":
            # A checkpoint's skeleton on the meta device has nothing to average, and torch's first meta `abs` of a
            # process costs 2.5 s of lazy imports: every command loading an attentive model paid it.
            w = self.weight
            self.alpha = nn.Parameter(w.new_empty(out_channels) if w.is_meta else mean_abs_scale(w))
        self.rprelu = RPReLU(out_channels) if rprelu else None

    def scale(self) -> torch.Tensor:
        """The per-output-channel alpha of eq. (6) in use now."""
        return self.alpha if self.alpha is not None else mean_abs_scale(self.weight)

    def binary_conv(self, x_binary: torch.Tensor) -> torch.Tensor:
        """conv(x_b, sign(W)): the integer accumulators (as float) that XNOR + popcount computes."""
        grad_scale = None
        if self.binarization.weight_grad == "bbcu":
            alpha = self.scale().detach()
            grad_scale = alpha.sign() / alpha.abs().clamp_min(1e-12)  # 1 / alpha, and no gradient where alpha = 0
        return F.conv2d(x_binary, sign_weight(self.weight, grad_scale), padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"BinaryConv2d expected (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        y = self.binary_conv(self.rsign(x)) * self.scale().view(1, -1, 1, 1)
        return self.rprelu(y) if self.rprelu is not None else y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"alpha_mode={self.binarization.alpha_mode!r}, weight_grad={self.binarization.weight_grad!r}, "
            f"rprelu={self.rprelu is not None}"
        )
