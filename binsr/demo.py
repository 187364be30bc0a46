"""`make demo`: the shipped models on a fresh machine, in a few minutes on two CPU cores.

Prints the cost of each shipped model, evaluates bicubic and the shipped checkpoints on the embedded test
photos (and Set5 / Set14 when a data root has them), prints the table, and writes a side-by-side figure
(HR, bicubic, FP, BBCU, proposed, each with a zoomed crop and its PSNR).
"""

from __future__ import annotations

from pathlib import Path

import torch

from binsr.data.images import dataset_names, load_images
from binsr.data.metrics import psnr_y
from binsr.evaluation.evaluate import evaluate, format_table, upscale
from binsr.nn.checkpoint import ASSETS, pretrained, read_manifest
from binsr.nn.summary import summary
from binsr.viz import side_by_side_figure

SHIPPED = ("edsr-fp-x2", "edsr-bbcu-x2", "edsr-proposed-x2", "edsr-fp-x4", "edsr-bbcu-x4", "edsr-proposed-x4")
FIGURE_IMAGE = ("photos-test", "chelsea")  # (dataset, image) shown side by side, at x2


def load_shipped(assets_dir: str | Path = ASSETS) -> tuple[dict[str, torch.nn.Module], list[str]]:
    """({name: model} for the shipped checkpoints present, [names missing])."""
    present = read_manifest(assets_dir)["models"]
    models = {name: pretrained(name, assets_dir) for name in SHIPPED if name in present}
    return models, [name for name in SHIPPED if name not in models]


def cost_line(name: str, model: torch.nn.Module) -> str:
    """One line: Params and OPs in BBCU's convention (320x180 LR) and storage with 1-bit weights."""
    stats = summary(model)
    return (
        f"{name:<18} Params {stats.params / 1e3:7.1f} K   OPs {stats.ops / 1e9:6.2f} G   "
        f"storage {stats.packed_bytes / 1024:6.1f} KiB (float32: {stats.float_bytes / 1024:6.1f} KiB)"
    )


def run_demo(out_dir: str | Path = "runs/demo", assets_dir: str | Path = ASSETS) -> Path | None:
    """Summaries, evaluation table and side-by-side figure of the shipped models; the figure's path (None when
    no x2 model is shipped)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    models, missing = load_shipped(assets_dir)
    print("Shipped models (cost at a 320x180 LR input, BBCU's convention):")
    for name, model in models.items():
        print("  " + cost_line(name, model))
    if missing:
        print(f"  not shipped yet: {', '.join(missing)} (run `binsr experiment --ship`)")

    benchmarks = [name for name in ("Set5", "Set14") if name in dataset_names()]
    sets = ["photos-test", *benchmarks]
    if not benchmarks:
        print("No Set5/Set14 found (set BINSR_DATA or put them in ../shared/data); using the embedded photos only.")
    results = []
    for scale in sorted({model.scale for model in models.values()} or {2}):
        results += evaluate(None, sets, scale)
        for name, model in models.items():
            if model.scale == scale:
                results += evaluate(model, sets, scale, method=name)
    print()
    print(format_table(results))

    x2 = {name: model for name, model in models.items() if model.scale == 2}
    if not x2:
        print("\nNo x2 model shipped, so no side-by-side figure.")
        return None
    dataset, image = FIGURE_IMAGE
    pair = next(p for p in load_images(dataset, 2) if p.name == image)
    panels = {"HR": (pair.hr, None)}
    for label, model in {"bicubic": None, **x2}.items():
        with torch.no_grad():
            sr = upscale(model, pair.lr, 2)
        panels[label.removesuffix("-x2")] = (sr, psnr_y(sr, pair.hr, 2))
    path = out_dir / "side_by_side.png"
    side_by_side_figure(panels, crop=(60, 110, 96)).savefig(path, dpi=100)
    print(f"\nSide-by-side figure: {path}")
    print("Next: `make lab` opens the notebooks (JupyterLab); start with notebooks/01.")
    return path
