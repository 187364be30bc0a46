"""Notebook 09 and `binsr demo`: SR results side by side, crops, error maps, result tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from torch import nn

from binsr.data.metrics import psnr_y, rgb_to_y
from binsr.evaluation.evaluate import upscale
from binsr.viz.common import MAX_FIGSIZE, QUANTIZED_CMAPS, model_color, model_family, new_figure, styled

if TYPE_CHECKING:
    from binsr.engine.runtime import PackedModel


@styled
def side_by_side_figure(panels: dict[str, tuple[np.ndarray, float | None]], crop: tuple[int, int, int]) -> Figure:
    """One column per panel {label: (uint8 HxWx3 image, PSNR in dB or None)}, all the same size: the whole
    image with the crop outlined on top, the crop (y, x, size) enlarged below, framed in the model's colour."""
    y, x, size = crop
    shapes = {image.shape for image, _ in panels.values()}
    if len(shapes) != 1:
        raise ValueError(f"panels have shapes {sorted(shapes)}; expected one shape for all")
    height, width = next(iter(shapes))[:2]
    if y < 0 or x < 0 or size < 1 or y + size > height or x + size > width:
        raise ValueError(f"crop={crop} does not fit a {height}x{width} image; expected (y, x, size) inside it")
    panel = min(2.4, MAX_FIGSIZE[0] / len(panels))  # inches per panel: all panels within the width limit
    fig = new_figure(panel * len(panels), panel * (height / width + 1) + 0.9)
    axes = fig.subplots(2, len(panels), squeeze=False, height_ratios=[height / width, 1])
    for column, (label, (image, psnr)) in enumerate(panels.items()):
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(image)
        top.plot([x, x + size, x + size, x, x], [y, y, y + size, y + size, y], color="red", linewidth=1.2)
        top.set_title(label if psnr is None else f"{label}\n{psnr:.2f} dB", color=_title_color(label))
        bottom.imshow(image[y : y + size, x : x + size], interpolation="nearest")
        _frame(bottom, label)
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def _title_color(label: str) -> str:
    """A model's colour for its panel title; black for anything else (a title in OTHER_COLOR reads as a model)."""
    return model_color(label) if model_family(label) is not None else "black"


def _frame(ax, label: str) -> None:
    """Draw the axes' frame thick in the model's colour, so a crop is recognised without reading its title."""
    for spine in ax.spines.values():
        spine.set_color(_title_color(label))
        spine.set_linewidth(3)


def super_resolve(
    models: dict[str, nn.Module | PackedModel | None], lr: np.ndarray, scale: int
) -> dict[str, np.ndarray]:
    """{label: uint8 SR image} of each model (None: MATLAB bicubic; a float model, or one that `binsr.engine.inference`
    prepared for the XNOR runtime), exactly as `binsr.evaluation.evaluate` scores it."""
    out = {}
    for label, model in models.items():
        if isinstance(model, nn.Module):
            model.eval()
        out[label] = upscale(model, lr, scale)
    return out


def y_error(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """|Y_sr - Y_hr| in grey levels (BT.601 luma, the channel PSNR is measured on)."""
    return np.abs(rgb_to_y(sr) - rgb_to_y(hr))


def crop_box(shape: tuple[int, ...], y_frac: float, x_frac: float, size: int) -> tuple[int, int, int]:
    """(y, x, size) of a square crop whose top-left corner sits at fractions (y_frac, x_frac) of the free range."""
    height, width = shape[:2]
    size = int(min(size, height, width))
    return int(round(y_frac * (height - size))), int(round(x_frac * (width - size))), size


@styled
def crop_compare_figure(
    hr: np.ndarray, outputs: dict[str, np.ndarray], scale: int, y_frac: float = 0.5, x_frac: float = 0.5,
    size: int = 64, max_error: float = 30.0,
) -> Figure:  # fmt: skip
    """Top: the HR crop and each output's crop, titled with the whole image's PSNR (Y, `scale` border shaved).
    Bottom: the HR image with the crop outlined, and each output's |Y error| on the crop (0..max_error)."""
    y, x, size = crop_box(hr.shape, y_frac, x_frac, size)
    n = len(outputs) + 1
    fig = new_figure(min(MAX_FIGSIZE[0], 2.1 * n + 0.6), 5.0)
    axes = fig.subplots(2, n, squeeze=False)
    sl = (slice(y, y + size), slice(x, x + size))
    axes[0, 0].imshow(hr[sl], interpolation="nearest")
    axes[0, 0].set_title("HR")
    _frame(axes[0, 0], "HR")
    axes[1, 0].imshow(hr)
    axes[1, 0].plot([x, x + size, x + size, x, x], [y, y, y + size, y + size, y], color="red", lw=1.5)
    axes[1, 0].set_title(f"crop at ({y}, {x})")
    for col, (label, sr) in enumerate(outputs.items(), start=1):
        axes[0, col].imshow(sr[sl], interpolation="nearest")
        axes[0, col].set_title(f"{label}\n{psnr_y(sr, hr, scale):.2f} dB", color=_title_color(label))
        _frame(axes[0, col], label)
        err = y_error(sr[sl], hr[sl])
        im = axes[1, col].imshow(err, cmap=QUANTIZED_CMAPS["inferno"], vmin=0, vmax=max_error)
        axes[1, col].set_title(f"|Y error|\nmean {err.mean():.1f}")
    fig.colorbar(im, ax=axes[1, -1], shrink=0.9, label="grey levels")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def side_by_side_crop(
    images: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]], image: str, scale: int,
    y_frac: float = 0.5, x_frac: float = 0.5, size: int = 64,
) -> Figure:  # fmt: skip
    """`crop_compare_figure` of one image of `images` ({name: (hr, {label: sr})}), for a dropdown + sliders."""
    hr, outputs = images[image]
    return crop_compare_figure(hr, outputs, scale, y_frac, x_frac, size)


def per_image_table(results: list[dict], metric: str = "psnr") -> str:
    """Markdown table from `binsr.evaluation.evaluate` results of several methods: one row per (dataset, image), one
    column per method, `metric` ("psnr" or "ssim"), with the best in bold; the dataset means last."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    fmt = "{:.2f}" if metric == "psnr" else "{:.4f}"
    table: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        for image in r["images"]:
            table.setdefault((r["name"], image["name"]), {})[r["method"]] = image[metric]
        table.setdefault((r["name"], "**mean**"), {})[r["method"]] = r[metric]
    lines = ["| set | image | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    order = [key for key in table if key[1] != "**mean**"] + [key for key in table if key[1] == "**mean**"]
    for key in order:
        values = table[key]
        best = max(values.values())
        cells = [fmt.format(values[m]) if m in values else "-" for m in methods]
        cells = [f"**{c}**" if m in values and values[m] == best else c for c, m in zip(cells, methods, strict=True)]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def manifest_table(manifest: dict) -> str:
    """Markdown table of the shipped checkpoints (`read_manifest`): variant, steps, lr, and validation PSNR/SSIM."""
    entries = manifest["models"]
    sets = list(dict.fromkeys(s for e in entries.values() for s in e.get("val", {})))
    lines = ["| shipped | variant | steps | lr | " + " | ".join(f"{s} PSNR / SSIM" for s in sets) + " |",
             "|---|---|---|---|" + "---|" * len(sets)]  # fmt: skip
    for name, e in entries.items():
        val = e.get("val", {})
        cells = [f"{val[s]['psnr']:.2f} / {val[s]['ssim']:.4f}" if s in val else "-" for s in sets]
        head = f"| {name} | {e.get('label', '-')} | {e.get('steps', '-')} | {e.get('lr', '-')} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def find_results(candidates: tuple[str | Path, ...] = ()) -> Path | None:
    """The first existing `results.json` of `binsr experiment` among `candidates` (files or folders), else None."""
    for c in candidates:
        path = Path(c)
        path = path / "results.json" if path.is_dir() else path
        if path.is_file():
            return path
    return None


@styled
def error_difference_figure(hr: np.ndarray, a: np.ndarray, b: np.ndarray, labels: tuple[str, str], crop=None) -> Figure:
    """Where output `a` beats output `b`: |Y_b - Y_hr| - |Y_a - Y_hr|, in a's colour where a is closer to HR and
    in b's where b is (`model_color`), on the whole image or on `crop` = (y, x, size), next to the HR image."""
    if crop is not None:
        y, x, size = crop
        hr, a, b = (im[y : y + size, x : x + size] for im in (hr, a, b))
    diff = y_error(b, hr) - y_error(a, hr)
    lim = max(float(np.quantile(np.abs(diff), 0.99)), 1e-6)
    fig = new_figure(9.0, 4.2)
    ax_h, ax_d = fig.subplots(1, 2)
    ax_h.imshow(hr, interpolation="nearest")
    ax_h.set_title("HR")
    cmap = model_diverging_cmap(labels[1], labels[0])
    im = ax_d.imshow(diff, cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
    better = float((diff > 0.5).mean())
    worse = float((diff < -0.5).mean())
    ax_d.set_title(f"{labels[0]} closer on {better:.0%} of pixels\n{labels[1]} closer on {worse:.0%} (by > 0.5)")
    fig.colorbar(im, ax=ax_d, shrink=0.9, label=f"|err {labels[1]}| - |err {labels[0]}| (grey levels)")
    for ax in (ax_h, ax_d):
        ax.set_axis_off()
    return fig


def model_diverging_cmap(negative: str, positive: str):
    """25-level colour map from model `negative`'s colour through white (a zero difference) to model `positive`'s."""
    colors = [model_color(negative), "white", model_color(positive)]
    return LinearSegmentedColormap.from_list(f"{negative}-{positive}", colors, N=25)


def paired_difference(results: list[dict], method_a: str, method_b: str, metric: str = "psnr") -> list[dict]:
    """Per image of `binsr.evaluation.evaluate` results: (set, image, metric of a - metric of b), for a paired
    comparison."""
    values = {(r["method"], r["name"], i["name"]): i[metric] for r in results for i in r["images"]}
    return [
        {"set": s, "image": image, "diff": values[(method_a, s, image)] - v}
        for (method, s, image), v in values.items()
        if method == method_b and (method_a, s, image) in values
    ]


@styled
def paired_difference_figure(diffs: list[dict], labels: tuple[str, str], metric: str = "PSNR (dB)") -> Figure:
    """One bar per image: metric of labels[0] minus metric of labels[1], in the colour of the better model, with
    the mean and the win count."""
    d = np.array([x["diff"] for x in diffs])
    fig = new_figure(10.0, 4.6)
    ax = fig.subplots()
    ax.bar(np.arange(len(d)), d, color=np.where(d > 0, model_color(labels[0]), model_color(labels[1])))
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(d.mean(), color="grey", ls="--", lw=1.5, label=f"mean {d.mean():+.3f}")
    ax.set_xticks(np.arange(len(d)), [f"{x['set']}/{x['image']}" for x in diffs], rotation=60, ha="right")
    ax.set_ylabel(f"{metric} difference")
    ax.set_title(f"{labels[0]} - {labels[1]}, {metric}: better on {int((d > 0).sum())} of {len(d)} images")
    ax.legend()
    return fig


@styled
def results_figure(rows: list[dict], baselines: dict[str, float] | None = None) -> Figure:
    """PSNR against OPs (15), one point per run of `binsr experiment` (rows as in results.json: label, scale,
    ops, val), one panel per scale; the mean over the validation sets (named on the y axis). Rows without OPs
    (bicubic) and `baselines` ({label: PSNR}, keyed "bicubic x2" etc.) are drawn as horizontal lines in the
    panel of their scale. Colour = model family (`model_color`), marker = variant, named in one legend (labels
    next to the points overlapped: the attentive variants lie within a few tenths of a dB and G OPs)."""
    scales = sorted({r["scale"] for r in rows})
    baselines = dict(baselines or {})
    fig = new_figure(MAX_FIGSIZE[0], 5.0)
    axes = np.atleast_1d(fig.subplots(1, len(scales)))
    markers: dict[str, str] = {}  # label -> marker, the same in every panel
    per_family: dict[str | None, int] = {}
    for ax, scale in zip(axes, scales, strict=True):
        runs = [r for r in rows if r["scale"] == scale]
        sets = list(dict.fromkeys(name for r in runs for name in r["val"]))
        for r in runs:
            psnr = float(np.mean([v["psnr"] for v in r["val"].values()]))
            if not r["ops"]:
                baselines[f"{r['label']} x{scale}"] = psnr
                continue
            if r["label"] not in markers:
                family = model_family(r["label"])
                markers[r["label"]] = _MARKERS[per_family.get(family, 0) % len(_MARKERS)]
                per_family[family] = per_family.get(family, 0) + 1
            # Hollow markers: the binary variants share their OPs and lie within a tenth of a dB, and a filled marker
            # hid EDSR-BBCU under the SE and spatial ones.
            style = {"color": model_color(r["label"]), "ms": 10, "mfc": "none", "mew": 1.8}
            ax.plot(r["ops"] / 1e9, psnr, markers[r["label"]], label=r["label"], **style)
        lowest = min((line.get_ydata()[0] for line in ax.lines), default=np.inf)
        for label, value in baselines.items():
            if not label.endswith(f"x{scale}"):
                continue
            if value < lowest - BASELINE_ZOOM_DB:  # drawn to scale, it would squeeze the models into a few pixels
                ax.text(0.01, 0.99, f"{label}: {value:.2f} dB, below this range", transform=ax.transAxes,
                        va="top", color=model_color(label))  # fmt: skip
                continue
            ax.axhline(value, color=model_color(label), ls=":", lw=1.5)
            ax.text(0.01, value, label, transform=ax.get_yaxis_transform(), va="bottom", color=model_color(label))
        ax.set_xlim(0, 1.1 * max([r["ops"] / 1e9 for r in runs] + [1.0]))  # no point on the frame
        ax.margins(y=0.12)
        ax.set_xlabel("OPs at a 320×180 LR input (G)")
        on = sets[0] if len(sets) == 1 else f"mean of {', '.join(sets[:-1])} and {sets[-1]}"
        ax.set_ylabel(f"validation PSNR on Y (dB)\n{on}")
        ax.set_title(f"x{scale}: quality vs cost")
    handles = {}
    for ax in axes:
        for line in ax.lines:
            if not line.get_label().startswith("_"):
                handles.setdefault(line.get_label(), line)
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=4)
    return fig


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
BASELINE_ZOOM_DB = 1.0  # a baseline further below the lowest model is named, not drawn
