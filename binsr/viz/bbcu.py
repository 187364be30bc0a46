"""Notebook 05, the BBCU block (8): where the residual goes, the amplification factor k (14), its cost."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from binsr.nn.binary import BinaryConv2d
from binsr.viz.common import new_figure, styled


def residual_placement(conv: BinaryConv2d, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A BBCU unit with its residual outside vs inside RPReLU, on features `x` (C, H, W) or (N, C, H, W).

    outside (eq. 8): RPReLU(alpha * conv(RSign(x), sign W)) + x
    inside:          RPReLU(alpha * conv(RSign(x), sign W) + x)
    """
    x4 = x if x.dim() == 4 else x.unsqueeze(0)
    with torch.no_grad():
        y = conv.binary_conv(conv.rsign(x4)) * conv.scale().view(1, -1, 1, 1)
        outside = conv.rprelu(y) + x4
        inside = conv.rprelu(y + x4)
    squeeze = (lambda t: t) if x.dim() == 4 else (lambda t: t[0])
    return {"x": squeeze(x4), "branch": squeeze(y), "outside": squeeze(outside), "inside": squeeze(inside)}


def negative_energy(t: torch.Tensor) -> float:
    """sum of min(t, 0)^2: the energy of the negative part of a tensor."""
    return float((t.clamp(max=0) ** 2).sum())


@styled
def residual_placement_figure(result: dict[str, torch.Tensor], max_points: int = 4000) -> Figure:
    """Output vs input of the unit for both placements, and the histograms, from `residual_placement`."""
    x = result["x"].flatten()
    idx = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:max_points]
    fig = new_figure(10.0, 4.0)
    ax_s, ax_h = fig.subplots(1, 2)
    e_x = negative_energy(result["x"])
    for key, color in (("outside", "tab:purple"), ("inside", "tab:red")):
        out = result[key].flatten()
        kept = negative_energy(result[key]) / max(e_x, 1e-12)
        ax_s.scatter(x[idx], out[idx], s=2, alpha=0.4, color=color, label=f"residual {key}")
        ax_h.hist(out.numpy(), bins=100, histtype="step", color=color, lw=1.5, label=f"{key}: {kept:.0%}")
    ax_h.hist(x.numpy(), bins=100, histtype="step", color="black", lw=1, label="input x")
    lim = [float(x.min()), float(x.max())]
    ax_s.plot(lim, lim, color="grey", lw=0.8, ls=":")
    ax_s.set_xlabel("input x (full-precision residual)")
    ax_s.set_ylabel("unit output")
    ax_s.set_title("what the next unit receives")
    ax_s.legend(markerscale=4)
    ax_h.set_yscale("log")
    ax_h.set_xlabel("value")
    ax_h.set_ylabel("count (log scale)")
    ax_h.set_title("distributions")
    ax_h.legend(title="negative energy kept")
    return fig


def amplitude_ratio(unit: nn.Module, x: torch.Tensor, k: float) -> float:
    """std of the binary branch over std of the residual for a BBCU unit (8) fed k * x (eq. 14).

    `unit` is a BBCUUnit (its `conv` is the branch RPReLU(alpha conv(RSign(.), sign W))).
    """
    x4 = (x if x.dim() == 4 else x.unsqueeze(0)) * k
    with torch.no_grad():
        branch = unit.conv(x4)
    return float(branch.std() / x4.std())


def amplification_curve(unit: nn.Module, x: torch.Tensor, points: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """k from 0.1 to 1000 (log-spaced) and the `amplitude_ratio` at each."""
    ks = np.logspace(-1, 3, points)
    return ks, np.array([amplitude_ratio(unit, x, k) for k in ks])


@styled
def amplification_figure(
    unit: nn.Module, x: torch.Tensor, k: float = 130.0, curve: tuple[np.ndarray, np.ndarray] | None = None
) -> Figure:
    """The branch/residual amplitude ratio over k (log-log) with the current k, and both amplitudes' histograms.

    `curve` is `amplification_curve(unit, x)`, computed here when not given; a slider over k passes it once, so
    a redraw runs the unit once instead of ten times."""
    ks, ratios = amplification_curve(unit, x) if curve is None else curve
    x4 = (x if x.dim() == 4 else x.unsqueeze(0)) * k
    with torch.no_grad():
        branch = unit.conv(x4)
    ratio = float(branch.std() / x4.std())
    fig = new_figure(10.0, 3.8)
    ax_r, ax_h = fig.subplots(1, 2)
    ax_r.loglog(ks, ratios, color="black")
    ax_r.plot([k], [ratio], "o", ms=9, color="tab:red", label=f"k = {k:.3g}: ratio {ratio:.3g}")
    ax_r.axhline(1.0, color="grey", lw=0.5, ls=":")
    ax_r.set_xlabel("amplification k (log scale)")
    ax_r.set_ylabel("std(branch) / std(residual)")
    ax_r.set_title("binary branch vs residual (14)")
    ax_r.legend()
    lo = float(torch.minimum(branch.min(), x4.min()))
    hi = float(torch.maximum(branch.max(), x4.max()))
    bins = np.linspace(lo, hi, 100)
    ax_h.hist(x4.flatten().numpy(), bins=bins, histtype="step", color="tab:purple", lw=2, label="residual k·x")
    ax_h.hist(branch.flatten().numpy(), bins=bins, histtype="step", color="tab:red", lw=2, label="binary branch")
    ax_h.set_yscale("log")
    ax_h.set_xlabel("value")
    ax_h.set_ylabel("count (log scale)")
    ax_h.set_title(f"amplitudes at k = {k:.3g}")
    ax_h.legend()
    return fig
