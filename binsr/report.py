"""The experiment's report: a Markdown table and a PSNR bar chart of the rows `binsr.experiment` produces.

A row is a dict: label, model, scale, params, ops, train_seconds, steps, lr and val ({set: {psnr, ssim}}).
"""

from __future__ import annotations

import json
from pathlib import Path

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
