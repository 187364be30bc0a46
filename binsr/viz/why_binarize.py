"""Notebook 01, why binarize: 1-bit images, the cost of SR vs classification, OPs (15)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from binsr.metrics import psnr_y
from binsr.viz.common import new_figure


def psnr_of_noise(sigma: float) -> float:
    """PSNR in dB of i.i.d. noise with standard deviation `sigma` grey levels on an 8-bit image: 20 log10(255/sigma)."""
    return 20.0 * math.log10(255.0 / sigma)


def add_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """`image` (uint8) plus Gaussian noise of `sigma` grey levels, rounded and clipped back to uint8."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def one_bit_image(image: np.ndarray) -> np.ndarray:
    """Each channel binarized at its mean (RSign with the threshold at the channel mean): 8 possible colours."""
    x = image.astype(np.float64)
    bits = x > x.mean(axis=(0, 1), keepdims=True)
    return np.where(bits, 255, 0).astype(np.uint8)


def sr_vs_classification_figure(image: np.ndarray, sigma: float = 3.0, label: str = "cat", seed: int = 0) -> Figure:
    """Why SR is harder than classification: the 1-bit image (still recognisable), and faint noise everywhere.

    A classifier only needs its argmax to survive; an SR network is scored on every one of its 3*H*W outputs
    (PSNR on Y as `binsr.metrics.psnr_y` measures it).
    """
    noisy = add_noise(image, sigma, seed)
    diff = np.abs(noisy.astype(np.float64) - image.astype(np.float64)).mean(axis=2)
    fig = new_figure(10.0, 3.4)
    axes = fig.subplots(1, 4)
    axes[0].imshow(image)
    axes[0].set_title("original (8 bits/channel)")
    axes[1].imshow(one_bit_image(image))
    axes[1].set_title(f"1 bit/channel:\na classifier still says '{label}'")
    axes[2].imshow(noisy)
    axes[2].set_title(f"noise sigma={sigma:g} grey levels\nPSNR(Y) {psnr_y(noisy, image, 0):.2f} dB")
    axes[3].imshow(diff, cmap="magma", vmin=0, vmax=max(3 * sigma, 1e-6))
    axes[3].set_title("|error|: small, but everywhere")
    for ax in axes:
        ax.set_axis_off()
    return fig


def cost_figure(summaries: dict) -> Figure:
    """Stacked bars of FLOPs and BOPs/64 (eq. 15) and bars of Params (eq. 16) for `{name: ModelSummary}`."""
    names = list(summaries)
    flops = np.array([summaries[n].flops for n in names]) / 1e9
    bops64 = np.array([summaries[n].bops / 64 for n in names]) / 1e9
    params = np.array([summaries[n].params for n in names]) / 1e3
    fig = new_figure(10.0, 3.4)
    ax_ops, ax_par = fig.subplots(1, 2)
    pos = np.arange(len(names))
    ax_ops.barh(pos, flops, color="tab:blue", label="FLOPs")
    ax_ops.barh(pos, bops64, left=flops, color="tab:orange", label="BOPs / 64")
    ax_ops.set_xscale("log")
    ax_ops.set_xlabel("G OPs (log scale)")
    ax_ops.set_title("OPs = FLOPs + BOPs/64  (15)")
    ax_ops.legend(loc="lower right", fontsize=8)
    ax_par.barh(pos, params, color="tab:purple")
    ax_par.set_xscale("log")
    ax_par.set_xlabel("K params (log scale)")
    ax_par.set_title("Params = FP + binary/32  (16)")
    for ax in (ax_ops, ax_par):
        ax.set_yticks(pos, names)
        ax.invert_yaxis()
    for p, v in zip(pos, flops + bops64, strict=True):
        ax_ops.text(v, p, f" {v:.2f}", va="center", fontsize=8)
    for p, v in zip(pos, params, strict=True):
        ax_par.text(v, p, f" {v:.1f}", va="center", fontsize=8)
    return fig
