"""Notebook 01, why binarize: 1-bit images, the cost of SR vs classification, OPs (15)."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from binsr.data.metrics import psnr_y
from binsr.viz.common import model_color, model_family, new_figure, styled


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


ERROR_SCALE_MAX = 20.0  # grey levels at the top of the error panel's colour bar, whatever sigma


@styled
def sr_vs_classification_figure(
    image: np.ndarray, sigma: float = 3.0, label: str = "cat", seed: int = 0, error_max: float = ERROR_SCALE_MAX
) -> Figure:
    """Why SR is harder than classification: the 1-bit image (still recognisable), and faint noise everywhere.

    A classifier only needs its argmax to survive; an SR network is scored on every one of its 3*H*W outputs
    (PSNR on Y as `binsr.data.metrics.psnr_y` measures it). The error panel's colour bar runs from 0 to `error_max`
    grey levels for every sigma, so that a larger noise looks larger.
    """
    if error_max <= 0:
        raise ValueError(f"error_max={error_max}: expected a positive number of grey levels")
    noisy = add_noise(image, sigma, seed)
    diff = np.abs(noisy.astype(np.float64) - image.astype(np.float64)).mean(axis=2)
    fig = new_figure(10.0, 2.9)
    axes = fig.subplots(1, 4)
    axes[0].imshow(image)
    axes[0].set_title("original\n8 bits/channel")
    axes[1].imshow(one_bit_image(image))
    axes[1].set_title(f"1 bit/channel: still\na '{label}' to a classifier")
    axes[2].imshow(noisy)
    axes[2].set_title(f"noise σ = {sigma:g} grey levels\nPSNR(Y) {psnr_y(noisy, image, 0):.2f} dB")
    im = axes[3].imshow(diff, cmap="magma", vmin=0, vmax=error_max)
    axes[3].set_title("|error| (grey levels):\nsmall, but everywhere")
    fig.colorbar(im, ax=axes[3], shrink=0.75, extend="max" if diff.max() > error_max else "neither")
    for ax in axes:
        ax.set_axis_off()
    return fig


@styled
def cost_figure(summaries: dict) -> Figure:
    """Stacked bars of FLOPs and BOPs/64 (eq. 15) and bars of Params (eq. 16) for `{name: ModelSummary}`; each
    name is written in its model's colour (`model_color`)."""
    names = list(summaries)
    flops = np.array([summaries[n].flops for n in names]) / 1e9
    bops64 = np.array([summaries[n].bops / 64 for n in names]) / 1e9
    params = np.array([summaries[n].params for n in names]) / 1e3
    fig = new_figure(10.0, 2.0 + 0.4 * len(names))
    ax_ops, ax_par = fig.subplots(1, 2, sharey=True)
    pos = np.arange(len(names))
    # Grey levels, not colours, tell full-precision from binary operations: colour is reserved for the models.
    ax_ops.barh(pos, flops, color="lightgrey", edgecolor="black", label="FLOPs (full precision)")
    ax_ops.barh(pos, bops64, left=flops, color="black", edgecolor="black", label="BOPs / 64 (binary)")
    ax_ops.set_xscale("log")
    ax_ops.set_xlabel("OPs at 320×180 input (G, log scale)")
    ax_ops.set_title("OPs = FLOPs + BOPs/64  (15)")
    fig.legend(loc="outside lower center", ncols=2)  # below: inside, it would hide a bar or a number
    ax_par.barh(pos, params, color="grey")
    ax_par.set_xscale("log")
    ax_par.set_xlabel("parameters (K, log scale)")
    ax_par.set_title("Params = FP + binary/32  (16)")
    ax_ops.set_yticks(pos, names)
    ax_ops.invert_yaxis()
    for tick, name in zip(ax_ops.get_yticklabels(), names, strict=True):
        if model_family(name) is not None:
            tick.set_color(model_color(name))
    for ax, values, fmt in ((ax_ops, flops + bops64, "{:.2f}"), (ax_par, params, "{:.1f}")):
        for p, v in zip(pos, values, strict=True):
            ax.text(v, p, " " + fmt.format(v), va="center")
        # Left: below the smallest part, so that no bar starts outside the axes; right: room for the numbers.
        parts = (*flops, *bops64) if ax is ax_ops else params
        smallest = min((x for x in parts if x > 0), default=1.0)
        ax.set_xlim(smallest / 2, max(values) * 4)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log labels overlap at projector font sizes
    return fig
