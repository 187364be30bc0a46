"""Notebook 07, activation distributions through FP, BBCU and attentive networks."""

from __future__ import annotations

import copy

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from binsr.nn.attention import NoAttention
from binsr.nn.binary import RPReLU, RSign
from binsr.nn.blocks import AttentiveBinaryUnit, ResBlock
from binsr.viz.common import model_color, new_figure, run_with_hooks, sample_values, styled


def body_activations(model: nn.Module, image: np.ndarray | torch.Tensor, n_samples: int = 20000) -> list[dict]:
    """What flows through each body block of an EDSR (`model.body` minus its last conv) on one image.

    Per block: `input`, a sample of the full-precision features entering it divided by the model's k (14), so
    FP, BBCU (k = 65 at 32 channels) and proposed (k = 1) share one scale, and `input_std`. Per BinaryConv2d in
    it (lists, one entry per unit): `rsign_in` a sample of x - t (what sign (5) and its surrogate window
    |x - t| < 1 see), `in_window` the exact fraction inside that window, `plus` the fraction of +1 per channel,
    `pre` / `post` samples of alpha conv(...) before / after RPReLU (7), and for attentive units `gated`, a sample
    of a1 Att_b(branch). For full-precision blocks `pre` is the first conv's output and the other lists are empty.
    """
    blocks = list(model.body)[:-1]
    k = float(getattr(model, "k", 1.0))
    stats = [
        {"name": f"body.{i}", "input": None, "input_std": 0.0, "rsign_in": [], "in_window": [], "plus": [],
         "pre": [], "post": [], "gated": []}
        for i in range(len(blocks))
    ]  # fmt: skip
    hooks = []

    def add(fn, module, i):
        hooks.append((module, lambda m, inputs, out: fn(m, inputs[0].detach(), out.detach(), i)))

    def block_in(m, x, out, i):
        stats[i]["input"] = sample_values(x / k, n_samples)
        stats[i]["input_std"] = float((x / k).std())

    def rsign(m, x, out, i):
        d = x - m.threshold.detach().view(1, -1, 1, 1)
        stats[i]["rsign_in"].append(sample_values(d, n_samples))
        stats[i]["in_window"].append(float((d.abs() < 1).float().mean()))
        stats[i]["plus"].append((out > 0).float().mean(dim=(0, 2, 3)).numpy())

    def rprelu(m, x, out, i):
        stats[i]["pre"].append(sample_values(x, n_samples))
        stats[i]["post"].append(sample_values(out, n_samples))

    def fp_conv(m, x, out, i):
        stats[i]["pre"].append(sample_values(out, n_samples))

    def gated(m, x, out, i):  # the unit calls Att_b(branch, a1): out is a1 Att_b(branch)
        stats[i]["gated"].append(sample_values(out, n_samples))

    for i, block in enumerate(blocks):
        add(block_in, block, i)
        if isinstance(block, ResBlock):
            add(fp_conv, block.body[0], i)
        for unit in block.children() if not isinstance(block, ResBlock) else []:
            conv = unit.conv
            add(rsign, conv.rsign, i)
            if conv.rprelu is not None:
                add(rprelu, conv.rprelu, i)
            if isinstance(unit, AttentiveBinaryUnit):
                add(gated, unit.att_bin, i)
    run_with_hooks(model, image, hooks)
    return stats


def plus_imbalance(stats: list[dict]) -> np.ndarray:
    """Per BinaryConv2d (blocks, then units), the mean over channels of |fraction of +1 - 1/2|: 0 when every
    channel's binary map is half +1 (most informative), 1/2 when each channel is constant."""
    return np.array([float(np.abs(p - 0.5).mean()) for s in stats for p in s["plus"]])


def dead_channels(stats: list[dict], tol: float = 0.02) -> np.ndarray:
    """Per BinaryConv2d, the number of input channels whose binary map is (almost) constant: +1 fraction < tol
    or > 1 - tol. Such a channel carries no information through the binary conv."""
    return np.array([int(((p < tol) | (p > 1 - tol)).sum()) for s in stats for p in s["plus"]])


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log2 p - (1 - p) log2 (1 - p): bits of information of a binary map that is +1 with probability p."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


@styled
def stream_figure(stats: dict[str, list[dict]]) -> Figure:
    """The std of the full-precision features entering each block (divided by k, eq. 14), one line per model."""
    fig = new_figure(7.0, 3.8)
    ax = fig.subplots()
    for label, s in stats.items():
        ax.plot([b["input_std"] for b in s], "o-", color=model_color(label), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_ylabel("std / k (log scale)")
    ax.set_title("full-precision features entering each block")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the axes: the lines fill the box
    return fig


@styled
def activation_figure(stats: dict[str, list[dict]], block: int = 0, unit: int = 0) -> Figure:
    """For `block` of each model in `stats` ({label: body_activations(...)}): the full-precision features
    entering it (divided by k), the RSign inputs x - t of unit `unit` with the surrogate window, and the
    fraction of +1 per channel (sorted)."""
    fig = new_figure(10.0, 4.6)
    ax_x, ax_t, ax_p = fig.subplots(1, 3)
    for label, s in stats.items():
        color, b = model_color(label), s[block]
        ax_x.hist(b["input"], bins=80, histtype="step", lw=2, color=color, label=f"{label}: {b['input_std']:.3f}")
        if b["rsign_in"]:
            u = unit % len(b["rsign_in"])
            d = np.clip(b["rsign_in"][u], -6, 6)
            ax_t.hist(d, bins=np.linspace(-6, 6, 97), histtype="step", lw=2, color=color,
                      label=f"{label}: {b['in_window'][u]:.0%}")  # fmt: skip
            p = np.sort(b["plus"][u])
            ax_p.plot(np.arange(len(p)), p, "o-", ms=4, color=color, label=f"{label}: {dead_channels([b])[u]}")
    ax_x.set_yscale("log")
    ax_x.set_xlabel("feature value / k")
    ax_x.set_ylabel("count (log scale)")
    ax_x.set_title(f"block {block} input / k")
    ax_t.axvspan(-1, 1, color="grey", alpha=0.15)
    ax_t.set_yscale("log")
    ax_t.set_xlabel("x - t (clipped to ±6)")
    ax_t.set_title(f"RSign input, unit {unit}")
    ax_p.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_xlabel("channel (sorted)")
    ax_p.set_title("fraction of +1")
    # Legends below the panels: inside they would hide the histograms' tails.
    for ax, title in ((ax_x, "std"), (ax_t, "in window |x - t| < 1"), (ax_p, "constant channels")):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title=title, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return fig


@styled
def branch_stages_figure(stats: list[dict], block: int = 0, unit: int = 0, label: str = "") -> Figure:
    """One binary unit's branch: alpha conv(...) before RPReLU, after RPReLU (7), and after a1 Att_b (12)."""
    b = stats[block]
    if not b["post"]:
        raise ValueError(f"block {block} has no binary branch (a full-precision block?)")
    u = unit % len(b["post"])
    stages = {"before RPReLU": b["pre"][u], "after RPReLU": b["post"][u]}
    if b["gated"]:
        stages["after a1 Att_b"] = b["gated"][u]
    lo = min(float(np.quantile(v, 0.001)) for v in stages.values())
    hi = max(float(np.quantile(v, 0.999)) for v in stages.values())
    bins = np.linspace(lo, hi, 100)
    fig = new_figure(8.0, 4.0)
    ax = fig.subplots()
    # Stages, not models: colours outside the model palette.
    for (name, v), color in zip(stages.items(), ("black", "tab:purple", "tab:red"), strict=False):
        ax.hist(np.clip(v, lo, hi), bins=bins, histtype="step", lw=2, color=color,
                label=f"{name}: mean {v.mean():.3f}, std {v.std():.3f}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("binary-branch value")
    ax.set_ylabel("count (log scale)")
    ax.set_title(f"{label} block {block} unit {u}: the binary branch stage by stage".strip())
    ax.legend()
    return fig


def ablated(
    model: nn.Module, rprelu_shifts: bool = False, thresholds: bool = False, attention: bool = False
) -> nn.Module:
    """A copy of `model` with some learned parts reset, to see what they do: `rprelu_shifts` sets every RPReLU's
    gamma and zeta (7) to 0, `thresholds` every RSign threshold (5) to 0, `attention` replaces every attention
    module (9)-(11) by the identity (a1, a2 are kept)."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for module in clone.modules():
            if rprelu_shifts and isinstance(module, RPReLU):
                module.gamma.zero_()
                module.zeta.zero_()
            if thresholds and isinstance(module, RSign):
                module.threshold.zero_()
            if attention and isinstance(module, AttentiveBinaryUnit):
                module.att_bin, module.att_res = NoAttention(), NoAttention()
    return clone.eval()


@styled
def imbalance_figure(curves: dict[str, list[dict]]) -> Figure:
    """`plus_imbalance` and the in-window fraction per binary conv for each variant in {label: body_activations}."""
    fig = new_figure(10.0, 3.2 + 0.3 * len(curves))
    ax_i, ax_w = fig.subplots(1, 2)
    styles = ("o-", "s--", "^:", "d-.")
    for (label, stats), style in zip(curves.items(), styles * 4, strict=False):
        imb = plus_imbalance(stats)
        window = [w for s in stats for w in s["in_window"]]
        ax_i.plot(imb, style, ms=5, color=model_color(label), label=f"{label}: mean {imb.mean():.3f}")
        ax_w.plot(window, style, ms=5, color=model_color(label), label=label)
    ax_i.set_ylabel("mean |fraction of +1 - 1/2|")
    ax_i.set_title("imbalance of the binary maps")
    ax_i.set_ylim(0, 0.5)
    ax_w.set_ylabel("fraction with |x - t| < 1")
    ax_w.set_title("RSign inputs in the gradient window")
    ax_w.set_ylim(0, 1)
    for ax in (ax_i, ax_w):
        ax.set_xlabel("binary conv (block by block)")
    # One legend for both panels, below them: the variants share their line styles.
    ax_i.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), ncols=1)
    return fig
