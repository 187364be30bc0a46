"""Notebook 06, attention modules (9)-(11) in the attentive unit (12): costs, maps, a1 and a2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from skimage.filters import sobel
from torch import nn

from binsr.data.metrics import rgb_to_y
from binsr.nn import checkpoint
from binsr.nn.attention import PixelAttention, SpatialAttention, SqueezeExcitation, make_attention
from binsr.nn.blocks import AttentiveBinaryUnit, BBCUUnit
from binsr.nn.models import model_config
from binsr.viz.common import (
    QUANTIZED_CMAPS,
    block_summary,
    correlation,
    new_figure,
    run_with_hooks,
    sample_tensor,
    styled,
)


def attention_kind(module: nn.Module) -> str:
    """The `binsr.nn.attention.ATTENTION_KINDS` name of an attention module ("none" for nn.Identity)."""
    for kind, cls in (("se", SqueezeExcitation), ("spatial", SpatialAttention), ("pixel", PixelAttention)):
        if isinstance(module, cls):
            return kind
    if isinstance(module, nn.Identity):
        return "none"
    raise ValueError(f"{type(module).__name__} is not an attention module of binsr.nn.attention")


def attentive_units(model: nn.Module) -> list[tuple[str, AttentiveBinaryUnit]]:
    """(name, unit) of every attentive binary unit (12) in `model`, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AttentiveBinaryUnit)]


def attention_cost(kind: str, channels: int = 32, lr_size: tuple[int, int] = (180, 320)) -> dict[str, float]:
    """Cost of one attention module (9)-(11) on `channels` maps of `lr_size`, counted by `binsr.nn.summary`.

    params and flops follow (15)/(16) (conv weights and biases; multiply-accumulates of its 1x1 convs);
    `products` is the elementwise x * m (one multiply per feature element), which (15) does not count.
    """
    if kind == "none":
        return {"params": 0, "flops": 0, "products": 0}
    with torch.device("meta"):
        stats = block_summary(make_attention(kind, channels), channels, lr_size)
    return {"params": stats.params, "flops": stats.flops, "products": channels * lr_size[0] * lr_size[1]}


def unit_cost_table(channels: int = 32, lr_size: tuple[int, int] = (180, 320)) -> list[dict]:
    """OPs (15) and Params (16) of one unit, BBCU (8) vs attentive (12) with the same attention on both branches."""
    rows = []
    with torch.device("meta"):
        base = block_summary(BBCUUnit(channels), channels, lr_size)
        rows.append({"unit": "BBCU (8)", "ops": base.ops, "params": base.params, "attention_ops": 0.0})
        for kind in ("se", "spatial", "pixel"):
            config = model_config("edsr-proposed", att_bin=kind, att_res=kind)  # as the model builds its units
            unit = AttentiveBinaryUnit(channels, config.binarization, config.attention)
            stats = block_summary(unit, channels, lr_size)
            row = {"unit": f"attentive (12), {kind}", "ops": stats.ops, "params": stats.params}
            rows.append({**row, "attention_ops": stats.flops})
    for row in rows:
        row["ops_vs_bbcu"] = row["ops"] / base.ops
    return rows


def attention_models(
    assets_dir: str | Path,
    runs_dir: str | Path | None = None,
    kinds: tuple[str, ...] = ("pixel", "spatial"),
    scale: int = 2,
) -> dict[str, tuple[str, nn.Module]]:
    """Trained attentive models (edsr-proposed with attention `kind` on both branches), one per kind in `kinds`
    where one exists: a shipped checkpoint of `assets_dir` first, else the run `runs_dir/proposed-<kind>-x<scale>/
    last.pt` of a local `binsr experiment`. Returns {kind: (where it came from, model in eval mode)}."""
    shipped = checkpoint.read_manifest(assets_dir)["models"]
    found: dict[str, tuple[str, nn.Module]] = {}
    for kind in kinds:
        for name, entry in shipped.items():
            args = entry["arguments"]
            same_kind = args.get("att_bin") == args.get("att_res") == kind
            if entry["model"] == "edsr-proposed" and args["scale"] == scale and same_kind:
                found[kind] = (f"shipped {name}", checkpoint.pretrained(name, assets_dir))
                break
        run = None if runs_dir is None else Path(runs_dir) / f"proposed-{kind}-x{scale}" / "last.pt"
        if kind not in found and run is not None and run.is_file():
            found[kind] = (f"local run {run}", checkpoint.load_model(run, "edsr-proposed", scale))
    return found


def attention_signals(model: nn.Module, image: np.ndarray | torch.Tensor) -> dict[str, dict]:
    """One forward pass of `model` on `image` (uint8 LR HxWx3, or a (1, 3, H, W) tensor), and per attentive
    unit (12): `x` its input, `branch` the binary branch RPReLU(alpha conv(RSign x)) before Att_b, `m_b` and
    `m_r` the attention maps ((C|1, H|1, W|1); None where the kind is "none"), `a1`, `a2`, `kinds`, `out` and
    `gate_range`, the range (0, top) of the unit's gates (top 1 for "sigmoid", 2 for "2sigmoid").
    The batch dimension is dropped."""
    units = attentive_units(model)
    if not units:
        raise ValueError("model has no AttentiveBinaryUnit (eq. 12)")
    store: dict[str, dict] = {name: {} for name, _ in units}
    hooks = []
    for name, unit in units:

        def unit_hook(module, inputs, out, name=name):
            store[name].update(x=inputs[0].detach()[0], out=out.detach()[0])

        def conv_hook(module, inputs, out, name=name):
            store[name]["branch"] = out.detach()[0]

        hooks += [(unit, unit_hook), (unit.conv, conv_hook)]
        for key, att in (("m_b", unit.att_bin), ("m_r", unit.att_res)):
            store[name][key] = None
            if not isinstance(att, nn.Identity):

                def gate_hook(module, inputs, out, name=name, key=key):
                    store[name][key] = out.detach()[0]

                hooks.append((att.gate, gate_hook))
    run_with_hooks(model, image, hooks)
    for name, unit in units:
        gates = [att.gate.height for att in (unit.att_bin, unit.att_res) if not isinstance(att, nn.Identity)]
        store[name].update(
            a1=unit.a1.item(),
            a2=unit.a2.item(),
            kinds=(attention_kind(unit.att_bin), attention_kind(unit.att_res)),
            gate_range=(0.0, max(gates, default=1.0)),
        )
    return store


def branch_share(signal: dict, attention: bool = True) -> torch.Tensor:
    """Per pixel, the binary branch's share of the unit's output (12), summed over channels:

        sum_c |a1 m_b * branch| / (sum_c |a1 m_b * branch| + sum_c |a2 m_r * x|)

    With attention=False the maps are taken as 1: the share the same a1, a2 would give without attention."""
    m_b = signal["m_b"] if attention and signal["m_b"] is not None else 1.0
    m_r = signal["m_r"] if attention and signal["m_r"] is not None else 1.0
    b = (signal["a1"] * m_b * signal["branch"]).abs().sum(dim=0)
    r = (signal["a2"] * m_r * signal["x"]).abs().sum(dim=0)
    return b / (b + r).clamp_min(1e-12)


def edge_strength(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the luma (Y of `binsr.data.metrics`) of a uint8 HxWx3 image."""
    return sobel(rgb_to_y(image))


def _spatial_mean(m: torch.Tensor | None) -> torch.Tensor | None:
    """The channel mean of a map with spatial extent (pixel, spatial); None for SE's (C, 1, 1) and for "none"."""
    if m is None or m.shape[-1] == 1 and m.shape[-2] == 1:
        return None
    return m.mean(dim=0)


def gate_summary(
    signals: dict[str, dict], image: np.ndarray | None = None, low: float = 0.1, high: float = 0.9
) -> list[dict]:
    """Per unit: a1, a2, mean maps, the fractions of map entries below `low` (branch switched off) and above
    `high` (passed on), the binary branch's mean share with and without attention (`branch_share`), and, when
    `image` (the LR input) is given and the map has spatial extent, the correlation of the channel-mean binary
    gate with the image's edge strength."""
    edges = None if image is None else torch.from_numpy(edge_strength(image)).float()
    rows = []
    for name, s in signals.items():
        row = {"unit": name, "a1": s["a1"], "a2": s["a2"], "kinds": s["kinds"]}
        for key in ("m_b", "m_r"):
            m = s[key]
            row[f"{key}_mean"] = 1.0 if m is None else float(m.mean())
            row[f"{key}_off"] = 0.0 if m is None else float((m < low).float().mean())
            row[f"{key}_on"] = 1.0 if m is None else float((m > high).float().mean())
            q = (1.0, 1.0) if m is None else torch.quantile(sample_tensor(m), torch.tensor([0.1, 0.9])).tolist()
            row[f"{key}_p10"], row[f"{key}_p90"] = q
        row["share"] = float(branch_share(s).mean())
        row["share_without_attention"] = float(branch_share(s, attention=False).mean())
        gate = _spatial_mean(s["m_b"])
        row["edge_corr"] = None
        if edges is not None and gate is not None and gate.shape == edges.shape:
            row["edge_corr"] = correlation(gate, edges)
        rows.append(row)
    return rows


def _unit_name(signals: dict[str, dict], block: int, unit: int) -> str:
    names = list(signals)
    prefix = names[0].rsplit(".", 2)[0]  # "body"
    name = f"{prefix}.{block}.{unit}"
    if name not in signals:
        raise ValueError(f"no attentive unit {name!r}; expected one of {', '.join(names)}")
    return name


MAP_SCALES = ("stretched", "gate range")


def _draw_map(
    ax, fig, m: torch.Tensor | None, channel: int, title: str, gate_range: tuple[float, float] | None
) -> None:
    """`gate_range` None: the colours stretched from the map's 1st to its 99th percentile; else (0, top)."""
    if m is None:
        ax.text(0.5, 0.5, "identity\n(no attention)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_axis_off()
        return
    if m.shape[-1] == 1 and m.shape[-2] == 1:  # SE: one weight per channel
        w = m.flatten().numpy()
        colors = ["tab:red" if c == channel % len(w) else "tab:gray" for c in range(len(w))]
        ax.bar(np.arange(len(w)), w, color=colors)
        ax.set_ylim(0, max(1.0, float(w.max()) * 1.05))  # a "2sigmoid" gate reaches 2
        ax.set_xlabel("channel")
        ax.set_ylabel("weight")
        ax.set_title(f"{title}, SE\nmean {w.mean():.2f}")
        return
    c = 0 if m.shape[0] == 1 else channel % m.shape[0]
    if gate_range is None:
        lo, hi = (float(v) for v in torch.quantile(m[c].flatten(), torch.tensor([0.01, 0.99])))
        hi = max(hi, lo + 1e-3)
    else:
        lo, hi = gate_range
    im = ax.imshow(m[c].numpy(), cmap=QUANTIZED_CMAPS["viridis"], interpolation="nearest", vmin=lo, vmax=hi)
    which = "spatial" if m.shape[0] == 1 else f"ch. {c}"
    # three short lines: four panels side by side leave each title a quarter of the width
    ax.set_title(f"{title}, {which}\nmean {float(m[c].mean()):.2f}\ncolours {lo:.3g}–{hi:.3g}")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.7)


@styled
def attention_browser_figure(
    image: np.ndarray,
    signals: dict[str, dict],
    block: int = 0,
    unit: int = 0,
    channel: int = 0,
    scale: str = "stretched",
) -> Figure:
    """The LR input, the binary-branch map m_b and the residual map m_r of unit `unit` of block `block` (pixel
    attention: channel `channel`; spatial: its one map; SE: its channel weights), and the binary branch's
    share of the unit's output per pixel (`branch_share`). `scale` "stretched" colours each map from its 1st to
    its 99th percentile (a modulation of a few per cent shows as a full range of colours); "gate range" over
    everything the gate can output, (0, 1) or (0, 2), so a map's colour says how far it is from the identity."""
    if scale not in MAP_SCALES:
        raise ValueError(f"scale={scale!r}: expected one of {', '.join(MAP_SCALES)}")
    name = _unit_name(signals, block, unit)
    s = signals[name]
    gate_range = s["gate_range"] if scale == "gate range" else None
    fig = new_figure(10.0, 3.6)
    ax_i, ax_b, ax_r, ax_s = fig.subplots(1, 4)
    ax_i.imshow(image)
    ax_i.set_title(f"{name}\na1 = {s['a1']:.2f}\na2 = {s['a2']:.2f}")
    ax_i.set_axis_off()
    _draw_map(ax_b, fig, s["m_b"], channel, f"m_b ({s['kinds'][0]})", gate_range)
    _draw_map(ax_r, fig, s["m_r"], channel, f"m_r ({s['kinds'][1]})", gate_range)
    share = branch_share(s)
    top = max(float(share.max()), 1e-6)
    im = ax_s.imshow(share.numpy(), cmap=QUANTIZED_CMAPS["magma"], interpolation="nearest", vmin=0, vmax=top)
    ax_s.set_title(f"binary share\n{float(share.mean()):.0%}\n(maps = 1: {float(branch_share(s, False).mean()):.0%})")
    ax_s.set_axis_off()
    fig.colorbar(im, ax=ax_s, shrink=0.7)
    return fig


def branch_scales(model: nn.Module) -> dict[str, np.ndarray]:
    """The learned a1 (binary branch) and a2 (residual) of every attentive unit (12), in order, with their names."""
    units = attentive_units(model)
    return {
        "names": np.array([name for name, _ in units]),
        "a1": np.array([u.a1.item() for _, u in units]),
        "a2": np.array([u.a2.item() for _, u in units]),
    }


@styled
def branch_scales_figure(model: nn.Module) -> Figure:
    """a1 and a2 per unit (left) and the balance a1 / a2 (right, bars from 1); both start at 1."""
    s = branch_scales(model)
    idx = np.arange(len(s["a1"]))
    labels = [n.removeprefix("body.") for n in s["names"]]
    fig = new_figure(10.0, 4.2)
    ax_a, ax_r = fig.subplots(1, 2)
    ax_a.plot(idx, s["a1"], "o-", color="tab:red", label="a1 (binary branch)")
    ax_a.plot(idx, s["a2"], "s-", color="tab:purple", label="a2 (residual)")
    ax_a.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax_a.set_ylabel("learned value")
    ax_a.set_title("learned scales of eq. (12)")
    ax_a.legend()
    ratio = s["a1"] / s["a2"]
    ax_r.bar(idx, ratio - 1, bottom=1, color=np.where(ratio >= 1, "tab:red", "tab:purple"))
    ax_r.axhline(1.0, color="grey", lw=0.8)
    ax_r.set_ylabel("a1 / a2")
    ax_r.set_title("balance (> 1: binary branch amplified)")
    for ax in (ax_a, ax_r):
        ax.set_xticks(idx, labels, rotation=90)
        ax.set_xlabel("unit (block.unit)")
    return fig


@styled
def gate_figure(rows: list[dict]) -> Figure:
    """From `gate_summary`: per unit, the mean of each attention map with its 10-90 % range (left), and the
    binary branch's share of the unit's output with vs without attention (right)."""
    idx = np.arange(len(rows))
    labels = [r["unit"].removeprefix("body.") for r in rows]
    fig = new_figure(10.0, 4.2)
    ax_g, ax_s = fig.subplots(1, 2)
    pairs = ((-0.15, "m_b", "tab:red", "binary branch"), (0.15, "m_r", "tab:purple", "residual"))
    for shift, key, color, name in pairs:
        mean = np.array([r[f"{key}_mean"] for r in rows])
        spread = np.array([[m - r[f"{key}_p10"], r[f"{key}_p90"] - m] for m, r in zip(mean, rows, strict=True)]).T
        ax_g.errorbar(idx + shift, mean, yerr=spread, fmt="o", ms=5, capsize=2, color=color, label=f"{key} ({name})")
    top = max([1.0] + [r[f"{key}_p90"] for r in rows for key in ("m_b", "m_r")])
    ax_g.axhline(0.5 if top <= 1.0 else 1.0, color="grey", lw=0.8, ls=":")  # sigmoid(0); 1 for a "2sigmoid" gate
    ax_g.set_ylim(0, 1.05 * top)
    ax_g.set_ylabel("map value")
    ax_g.set_title("maps: mean and 10-90 % range")
    ax_g.legend()
    ax_s.plot(idx, [r["share"] for r in rows], "o-", color="tab:red", label="with attention")
    ax_s.plot(idx, [r["share_without_attention"] for r in rows], "o--", color="grey", label="maps set to 1")
    ax_s.set_ylabel("share of |unit output|")
    ax_s.set_title("binary branch's share")
    ax_s.set_ylim(0, None)
    ax_s.legend()
    for ax in (ax_g, ax_s):
        ax.set_xticks(idx, labels, rotation=90)
        ax.set_xlabel("unit (block.unit)")
    return fig
