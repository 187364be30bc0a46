"""The experiment's report: a Markdown table and a PSNR bar chart of the rows `binsr.training.experiment` produces, and
the budget study's table and figure (PSNR against training steps, seeds pooled).

A row is a dict: label, model, scale, params, ops, train_seconds, steps, lr, val ({set: {psnr, ssim}}) and, for
rows of `binsr.training.experiment.run_row`, seed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def format_markdown(rows: list[dict]) -> str:
    """The results table: PSNR / SSIM per validation set, Params and OPs (BBCU's convention, 320x180 LR)."""
    sets = list(dict.fromkeys(name for row in rows for name in row["val"]))
    header = ["model", "scale", "Params (K)", "OPs (G)", *(f"{s} PSNR / SSIM" for s in sets), "train time (min)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["label"], f"x{row['scale']}", f"{row['params'] / 1e3:.1f}", f"{row['ops'] / 1e9:.2f}"]
        cells += [
            f"{row['val'][s]['psnr']:.2f} / {row['val'][s]['ssim']:.4f}" if s in row["val"] else "-" for s in sets
        ]
        cells.append(f"{row['train_seconds'] / 60:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_benchmarks(rows: list[dict], sets: tuple[str, ...] = ("Set5", "Set14", "B100", "Urban100")) -> str:
    """The table SR papers print: one row per model and scale, PSNR / SSIM on each standard set ("-" where a row
    was not scored on it)."""
    lines = ["| model | scale | " + " | ".join(f"{s} PSNR / SSIM" for s in sets) + " |", "|" + "---|" * (2 + len(sets))]
    for row in rows:
        cells = [f"{row['val'][s]['psnr']:.2f} / {row['val'][s]['ssim']:.4f}" if s in row["val"] else "-" for s in sets]
        lines.append(f"| {row['label']} | x{row['scale']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_results(rows: list[dict], path: str | Path) -> None:
    """Bar chart of validation PSNR, one panel per scale, one bar per (variant, validation set)."""
    scales = sorted({row["scale"] for row in rows})
    fig = Figure(figsize=(7 * len(scales), 4.5), layout="tight")  # no pyplot: no backend, no global state
    axes = fig.subplots(1, len(scales), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        runs = [row for row in rows if row["scale"] == scale]
        sets = list(dict.fromkeys(name for row in runs for name in row["val"]))
        width = 0.8 / max(len(sets), 1)
        values = []
        for i, name in enumerate(sets):
            psnr = [row["val"].get(name, {}).get("psnr", float("nan")) for row in runs]
            ax.bar([j + i * width for j in range(len(runs))], psnr, width, label=name)
            values += psnr
        # PSNR differences are tenths of a dB: a zero baseline would hide them.
        finite = [v for v in values if v == v]
        if finite:
            ax.set_ylim(min(finite) - 0.5, max(finite) + 0.3)
        ax.set_xticks([j + width * (len(sets) - 1) / 2 for j in range(len(runs))])
        ax.set_xticklabels([row["label"] for row in runs], rotation=30, ha="right")
        ax.set_ylabel("PSNR (dB, Y)")
        trained = runs[-1]  # every trained run shares steps and lr; bicubic comes first
        ax.set_title(f"x{scale}, {trained['steps']} steps, lr {trained['lr']:g}")
        ax.legend()
    fig.savefig(path, dpi=120)


def write_results(rows: list[dict], out_dir: str | Path) -> None:
    """results.json, results.md and results.png in `out_dir`."""
    out_dir = Path(out_dir)
    (out_dir / "results.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "results.md").write_text(format_markdown(rows) + "\n")
    plot_results(rows, out_dir / "results.png")


def _seeds_pooled(rows: list[dict]) -> dict[tuple[str, int], dict[str, list[float]]]:
    """{(label, steps): {set: [PSNR of each seed]}}, in the order the rows come."""
    pooled: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        for name, measured in row["val"].items():
            pooled[row["label"], row["steps"]][name].append(measured["psnr"])
    return pooled


def format_budget(rows: list[dict]) -> str:
    """The budget study as a Markdown table: one row per (model, steps), per set the PSNR as the mean over the
    seeds ± half their range (a single seed shows its value alone), and the number of seeds."""
    pooled = _seeds_pooled(rows)
    sets = list(dict.fromkeys(name for per_set in pooled.values() for name in per_set))
    header = ["model", "steps", "seeds", *(f"{s} PSNR" for s in sets)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for (label, steps), per_set in pooled.items():
        cells = []
        for name in sets:
            values = per_set.get(name, [])
            if not values:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values[0]:.3f}")
            else:
                cells.append(f"{np.mean(values):.3f} ± {(max(values) - min(values)) / 2:.3f}")
        seeds = max(len(values) for values in per_set.values())
        lines.append(f"| {label} | {steps} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_budget(rows: list[dict], path: str | Path) -> Figure:
    """PSNR against training steps (log axis), one panel per set, one line per model: the mean over seeds, with
    the seeds' range as error bars. Saved to `path`; the figure is returned for a notebook to show."""
    pooled = _seeds_pooled(rows)
    sets = list(dict.fromkeys(name for per_set in pooled.values() for name in per_set))
    fig = Figure(figsize=(3.6 * len(sets), 3.6), layout="constrained")
    axes = fig.subplots(1, len(sets), squeeze=False)[0]
    labels = list(dict.fromkeys(label for label, _ in pooled))
    for ax, name in zip(axes, sets, strict=True):
        for label in labels:
            points = sorted((steps, per_set[name]) for (row_label, steps), per_set in pooled.items()
                            if row_label == label and per_set.get(name))  # fmt: skip
            if not points:
                continue
            steps = [step for step, _ in points]
            low, mean, high = (np.array([fn(values) for _, values in points]) for fn in (min, np.mean, max))
            ax.errorbar(steps, mean, yerr=[mean - low, high - mean], marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ax.set_xlabel("training steps")
        ax.set_title(name)
    axes[0].set_ylabel("PSNR (dB, Y)")
    axes[-1].legend(fontsize="small")
    fig.savefig(path, dpi=120)
    return fig
