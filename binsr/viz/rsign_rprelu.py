"""Notebook 03, RSign (5) and RPReLU (7): thresholds, binary maps, thermometer codes."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure

from binsr.nn.binary import RPReLU, RSign
from binsr.viz.common import correlation, new_figure, styled


def rsign_apply(features: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """RSign (5) of `features` (C, H, W) or (N, C, H, W) with one threshold for all channels, or one per channel."""
    x = features if features.dim() == 4 else features.unsqueeze(0)
    rsign = RSign(x.shape[1])
    with torch.no_grad():
        rsign.threshold.copy_(torch.as_tensor(threshold, dtype=rsign.threshold.dtype).expand(x.shape[1]))
        out = rsign(x)
    return out if features.dim() == 4 else out[0]


def fraction_positive(features: torch.Tensor, threshold: float | torch.Tensor) -> np.ndarray:
    """Per channel, the fraction of RSign (5) outputs that are +1 at `threshold` (features: (C,H,W) or (N,C,H,W))."""
    b = rsign_apply(features, threshold)
    dims = (1, 2) if b.dim() == 3 else (0, 2, 3)
    return (b > 0).float().mean(dim=dims).numpy()


@styled
def rsign_figure(features: torch.Tensor, threshold: float = 0.0, channel: int = 0) -> Figure:
    """Histogram of one channel with the threshold, its binary map b = RSign(x), and the +1 fraction per channel."""
    x = features[channel]
    b = rsign_apply(features, threshold)[channel]
    frac = fraction_positive(features, threshold)
    fig = new_figure(10.0, 3.6)
    ax_h, ax_x, ax_b, ax_f = fig.subplots(1, 4, width_ratios=[1.1, 1.2, 1.2, 1.0])
    ax_h.hist(x.flatten().numpy(), bins=60, color="tab:blue")
    ax_h.axvline(threshold, color="tab:red", lw=2, label=f"t = {threshold:.3g}")
    ax_h.set_title(f"channel {channel}: x_k")
    ax_h.set_xlabel("feature value")
    ax_h.set_ylabel("pixels")
    ax_h.legend()
    ax_x.imshow(x.numpy(), cmap="gray")
    ax_x.set_title("feature map")
    ax_b.imshow(b.numpy(), cmap="gray", vmin=-1, vmax=1)
    ax_b.set_title(f"sign(x - t):\n{frac[channel]:.0%} are +1")
    for ax in (ax_x, ax_b):
        ax.set_axis_off()
    colors = ["tab:red" if c == channel else "tab:gray" for c in range(len(frac))]
    ax_f.bar(np.arange(len(frac)), frac, color=colors)
    ax_f.axhline(0.5, color="black", lw=0.5, ls=":")
    ax_f.set_ylim(0, 1)
    ax_f.set_xlabel("channel")
    ax_f.set_title("fraction of +1\nper channel")
    return fig


def thermometer(x: torch.Tensor, thresholds) -> torch.Tensor:
    """Mean of the RSign (5) maps of one feature map `x` (H, W) at several thresholds: a thermometer code.

    Channels that see the same values but have different thresholds together encode graded intensity;
    with one shared threshold all copies are identical and only one bit survives.
    """
    t = torch.as_tensor(thresholds, dtype=x.dtype).flatten()
    copies = x.unsqueeze(0).expand(len(t), -1, -1)
    return rsign_apply(copies, t).mean(dim=0)


@styled
def thermometer_figure(x: torch.Tensor, levels: int = 4, shared: bool = False) -> Figure:
    """The map `x` (H, W), and its thermometer code with `levels` thresholds at evenly spaced quantiles
    (or all at 0 when `shared`), with the correlation between the two."""
    q = torch.linspace(0, 1, levels + 2)[1:-1]
    thresholds = torch.zeros(levels) if shared else torch.quantile(x.flatten(), q)
    code = thermometer(x, thresholds)
    fig = new_figure(7.0, 3.6)
    ax_x, ax_c = fig.subplots(1, 2)
    ax_x.imshow(x.numpy(), cmap="gray")
    ax_x.set_title("feature map x")
    ax_c.imshow(code.numpy(), cmap="gray", vmin=-1, vmax=1)
    kind = "all at t=0" if shared else "at quantiles"
    ax_c.set_title(f"mean of {levels} sign maps ({kind})\ncorrelation with x: {correlation(code, x):.3f}")
    for ax in (ax_x, ax_c):
        ax.set_axis_off()
    return fig


def rprelu_apply(x: torch.Tensor, gamma: float, beta: float, zeta: float) -> torch.Tensor:
    """RPReLU (7) with one (gamma, beta, zeta) for every channel of `x` ((C,H,W), (N,C,H,W) or 1-D)."""
    shape = x.shape
    x4 = x.reshape(1, 1, -1, 1) if x.dim() == 1 else (x if x.dim() == 4 else x.unsqueeze(0))
    act = RPReLU(x4.shape[1])
    with torch.no_grad():
        act.gamma.fill_(gamma)
        act.beta.fill_(beta)
        act.zeta.fill_(zeta)
        return act(x4).reshape(shape)


@styled
def rprelu_figure(
    gamma: float = 0.0, beta: float = 0.25, zeta: float = 0.0, values: torch.Tensor | None = None
) -> Figure:
    """Left: RPReLU (7) as a function with its pivot (gamma, zeta). Right: the distribution of `values` before/after."""
    ncols = 1 if values is None else 2
    fig = new_figure(5.0 * ncols, 3.8)
    axes = np.atleast_1d(fig.subplots(1, ncols))
    span = 3.0 if values is None else float(values.abs().quantile(0.99)) * 1.2 + abs(gamma)
    x = torch.linspace(-span, span, 401)
    ax = axes[0]
    ax.plot(x, x, color="grey", lw=0.8, ls=":", label="identity")
    ax.plot(x, rprelu_apply(x, 0.0, 0.25, 0.0), color="tab:gray", lw=1, label="PReLU, β = 0.25")
    ax.plot(x, rprelu_apply(x, gamma, beta, zeta), color="tab:red", lw=2.5, label="RPReLU")
    ax.plot([gamma], [zeta], "o", color="tab:red")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_title(f"γ = {gamma:.2g}, β = {beta:.2g}, ζ = {zeta:.2g}")
    ax.legend(loc="upper left")
    ax.set_xlabel("input x")
    ax.set_ylabel("output")
    if values is not None:
        v = values.flatten()
        out = rprelu_apply(v, gamma, beta, zeta)
        lo = float(torch.minimum(v.min(), out.min()))
        hi = float(torch.maximum(v.max(), out.max()))
        bins = np.linspace(lo, hi, 80)
        axes[1].hist(v.numpy(), bins=bins, alpha=0.5, color="tab:blue", label=f"input, mean {float(v.mean()):.2f}")
        axes[1].hist(out.numpy(), bins=bins, alpha=0.5, color="tab:red", label=f"RPReLU, mean {float(out.mean()):.2f}")
        axes[1].set_title("activation distribution")
        axes[1].set_xlabel("activation value")
        axes[1].set_ylabel("count")
        axes[1].legend(loc="upper right")  # the inputs' right tail is low: the corner is free
    return fig
