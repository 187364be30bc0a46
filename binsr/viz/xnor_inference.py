"""Notebook 10, XNOR inference for real: packed bits, exact accumulators, sizes, speed."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from binsr.nn.binary import BinaryConv2d
from binsr.viz.common import binary_convs, model_color, new_figure, run_with_hooks, styled


def weight_bits(packed, out_channel: int) -> np.ndarray:
    """Decode the sign bits of output channel `out_channel` from a `binsr.engine.xnor.PackedConv` as a (k*k, C) bool
    array (row = tap dy*k + dx, column = input channel), reading the layout its docstring describes: bits is
    (k, k, words, O') uint32 or uint64, bits[dy, dx, w, o] holding channels 32w .. 32w+31 or 64w .. 64w+63 of
    output o (bit b = the word's first channel + b)."""
    k = packed.kernel_size
    taps = np.ascontiguousarray(packed.bits[:, :, :, out_channel].reshape(k * k, -1))  # (k*k, words)
    bits = np.unpackbits(taps.view(np.uint8), axis=1, bitorder="little")  # little-endian words: byte 0 first
    return bits[:, : packed.in_channels].astype(bool)


def sign_string(word: int | np.integer, channels: int = 64) -> str:
    """A uint64 word as its bits, channel 0 first (bit b = channel b), '+' for 1 (= +1) and '-' for 0 (= -1)."""
    return "".join("+" if (int(word) >> b) & 1 else "-" for b in range(channels))


@styled
def bit_layout_figure(conv: BinaryConv2d, packed, out_channel: int = 0) -> Figure:
    """Left: sign(W) of one output channel of `conv` as taps x input channels. Middle: the same bits decoded from
    the packed words (`weight_bits`). Right: where they differ (nowhere, if the packing is right)."""
    w = (conv.weight.detach()[out_channel] > 0).numpy()  # (C, k, k)
    signs = w.reshape(w.shape[0], -1).T  # (k*k, C)
    bits = weight_bits(packed, out_channel)
    fig = new_figure(10.0, 3.8)
    axes = fig.subplots(1, 3, sharey=True)
    k = conv.kernel_size
    for ax, image, title, cmap in (
        (axes[0], signs, f"sign W[{out_channel}] > 0\n(float weights)", "gray"),
        (axes[1], bits, "bits decoded from\nthe uint64 words", "gray"),
        (axes[2], signs != bits, f"differences: {int((signs != bits).sum())}", "Reds"),  # white where equal
    ):
        ax.imshow(image, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_xlabel("input channel")
        ax.set_title(title)
    axes[0].set_yticks(range(k * k), [f"({dy},{dx})" for dy in range(k) for dx in range(k)])
    axes[0].set_ylabel("tap (dy, dx)")
    return fig


def accumulator_check(model: nn.Module, image: np.ndarray | torch.Tensor) -> list[dict]:
    """For every BinaryConv2d of `model` on `image`: the float simulation's accumulators conv(RSign x, sign W)
    (what `BinaryConv2d.binary_conv` computes, as float32) against the XNOR + popcount kernel's integer ones
    (`binsr.engine.xnor.xnor_accumulators` on `pack_activations` of the same input). Returns per layer: name, shape,
    count, max_abs_diff and equal (bit-for-bit equality of the two as integers)."""
    from binsr.engine import xnor
    from binsr.engine.export import pack_binary_conv

    inputs: dict[str, torch.Tensor] = {}
    convs = binary_convs(model)
    hooks = [(m, lambda mod, args, out, name=name: inputs.__setitem__(name, args[0].detach())) for name, m in convs]
    run_with_hooks(model, image, hooks)
    rows = []
    for name, conv in convs:
        x = inputs[name]
        with torch.no_grad():
            simulated = conv.binary_conv(conv.rsign(x)).permute(0, 2, 3, 1).numpy()  # NHWC float32
        nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
        threshold = conv.rsign.threshold.detach().numpy()
        accumulators = xnor.xnor_accumulators(xnor.pack_activations(nhwc, threshold), pack_binary_conv(conv))
        integral = bool((simulated == np.round(simulated)).all())
        diff = np.abs(simulated.astype(np.int64) - accumulators.astype(np.int64))
        rows.append({
            "name": name, "shape": tuple(accumulators.shape), "count": int(accumulators.size),
            "max_abs_diff": int(diff.max()), "equal": integral and bool((diff == 0).all()),
        })  # fmt: skip
    return rows


@styled
def size_figure(sizes: dict[str, dict[str, int]]) -> Figure:
    """Horizontal bars of storage in KiB for {model: {what: bytes}} (e.g. float32 checkpoint vs packed file), in
    each model's colour (`model_color`); entries about float32 storage are hatched."""
    fig = new_figure(10.0, 1.4 + 0.4 * sum(len(v) for v in sizes.values()))
    ax = fig.subplots()
    labels, values, colors, hatches = [], [], [], []
    for model, entries in sizes.items():
        for what, size in entries.items():
            labels.append(f"{model}: {what}")
            values.append(size / 1024)
            colors.append(model_color(model))
            hatches.append("//" if "float" in what else "")
    pos = np.arange(len(values))
    bars = ax.barh(pos, values, color=colors, edgecolor="white")
    for bar, hatch in zip(bars, hatches, strict=True):
        bar.set_hatch(hatch)
    for p, v in zip(pos, values, strict=True):
        ax.text(v, p, f" {v:,.1f} KiB", va="center")
    ax.set_yticks(pos, labels)
    ax.invert_yaxis()
    ax.set_xlabel("storage (KiB)")
    ax.set_xlim(0, max(values) * 1.3)
    ax.set_title("storage: float32 (hatched) against 1-bit weights")
    return fig


@styled
def bench_figure(rows: list[dict]) -> Figure:
    """Speedups of `binsr.evaluation.bench` rows (XNOR engine vs the faster torch fp32 layout), one bar per case."""
    fig = new_figure(10.0, 4.4)
    ax = fig.subplots()
    labels = [f"{r['case']}\n{r['shape']}\n{r['kernel']} kernel, {r['threads']} thr." for r in rows]
    speed = np.array([r["speedup"] for r in rows])
    pos = np.arange(len(rows))
    # Purple and red, not the model colours: these bars are cases of one engine, not models.
    ax.bar(pos, speed, color=np.where(speed >= 1, "tab:purple", "tab:red"))
    ax.axhline(1.0, color="black", lw=0.8)
    for p, v in zip(pos, speed, strict=True):
        ax.text(p, v, f"{v:.1f}x", ha="center", va="bottom")
    ax.set_xticks(pos, labels)
    ax.set_ylim(0, max(1.0, float(speed.max())) * 1.15)  # room for the numbers above the bars
    ax.set_ylabel("speed-up (float time / XNOR time)")
    ax.set_title("XNOR engine vs torch float32 on this machine (median; noisy)")
    return fig
