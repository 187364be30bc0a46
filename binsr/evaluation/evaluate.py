"""Benchmark evaluation: super-resolve each LR image, then PSNR/SSIM on Y against the mod-cropped HR.

Follows BasicSR: the model's output is clamped to [0, 1] and rounded to uint8 before the metrics, and
`shave` = scale border pixels are ignored (`binsr.data.metrics`). `model=None` is the bicubic baseline, MATLAB
bicubic upsampling (`binsr.data.imresize`) of the LR image. Images are read one at a time and large ones run in
tiles (`binsr.engine.tiling`), with the same pixels as one pass, so memory stays bounded at any image size.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from binsr.data.images import dataset_size, iter_images, to_tensor
from binsr.data.imresize import imresize
from binsr.engine.tiling import BICUBIC_CONTEXT, GLOBAL_PAD, auto_tile, context, tiled

if TYPE_CHECKING:
    from binsr.engine.runtime import PackedModel


def self_ensemble(model: nn.Module | PackedModel, lr: torch.Tensor) -> torch.Tensor:
    """x8 geometric self-ensemble (EDSR): the mean of the model's outputs over the 8 flips and rotations of
    `lr` (N, C, h, w), each mapped back to the original orientation."""
    outputs = []
    for k in range(8):
        x = torch.rot90(lr, k % 4, dims=(2, 3))
        y = model(x.flip(3) if k >= 4 else x)
        y = y.flip(3) if k >= 4 else y
        outputs.append(torch.rot90(y, -(k % 4), dims=(2, 3)))
    return torch.stack(outputs).mean(dim=0)


@torch.no_grad()
def _model_output(model: nn.Module | PackedModel, ensemble: bool, lr: np.ndarray) -> np.ndarray:
    device = next(model.parameters(), torch.empty(0)).device if isinstance(model, nn.Module) else "cpu"
    x = to_tensor(lr[None]).to(device)
    y = self_ensemble(model, x) if ensemble else model(x)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).contiguous().cpu().numpy()


def upscale(
    model: nn.Module | PackedModel | None,
    lr: np.ndarray,
    scale: int,
    ensemble: bool = False,
    tile: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """The uint8 SR image that `evaluate` scores: `model`'s output on the uint8 LR image `lr` (HxWx3), clamped
    and rounded, optionally self-ensembled; MATLAB bicubic when `model` is None. `model` is a float model or a
    packed one (`binsr.engine.inference`), which gives the same pixels, tiles included.

    Large images run in tiles (`binsr.engine.tiling`) with the same pixels: `tile` is the LR tile side, None tiles
    automatically above `binsr.engine.tiling.AUTO_ABOVE` pixels, 0 never tiles. `progress` shows a bar over the
    tiles."""
    height, width = lr.shape[:2]
    tile = auto_tile(height, width, tile)
    if model is None:
        fn, pad = partial(imresize, scale=scale), BICUBIC_CONTEXT
    else:
        fn, pad = partial(_model_output, model, ensemble), context(model)
    if tile == 0 or (height <= tile and width <= tile):
        return fn(lr)
    if pad is None:
        warnings.warn(f"{type(model).__name__} pools globally (squeeze-and-excitation), so its tiled output differs "
                      "slightly from one pass; pass tile=0 (--tile 0) for one pass", stacklevel=2)  # fmt: skip
        pad = GLOBAL_PAD
    threads = torch.get_num_threads()
    if model is None or isinstance(model, nn.Module) or threads == 1 or _portable():
        return tiled(fn, lr, scale, tile, pad, progress)
    # The XNOR runtime takes a tile per thread, each tile on one thread: its ops are short, and OpenMP's threads
    # spin between them. The pixels are the same (no op's result depends on the threads). Not with the portable
    # kernel, whose numba threads take one caller at a time.
    torch.set_num_threads(1)
    try:
        return tiled(fn, lr, scale, tile, pad, progress, workers=threads)
    finally:
        torch.set_num_threads(threads)


def _portable() -> bool:
    from binsr.engine import xnor

    return xnor.current_kernel() == "portable"


def min_hr_side(scale: int) -> int:
    """The smallest HR side that can be scored: SSIM's 11x11 window inside the `scale`-pixel shaved border."""
    return 2 * scale + 11


def _evaluate_set(
    model: nn.Module | PackedModel | None, name: str, scale: int, data_root: str | os.PathLike | None, ensemble: bool,
    tile: int | None, progress: bool,
) -> list[dict]:  # fmt: skip
    from binsr.data.metrics import (  # here, not above: scipy takes 0.3 s to import, which upscale needs not
        psnr_y,
        ssim_y,
    )

    images = []
    pairs = iter_images(name, scale, data_root)
    total = dataset_size(name, data_root)
    for pair in tqdm(pairs, total=total, desc=f"{name} x{scale}", unit="image", disable=not progress, leave=False):
        if min(pair.hr.shape[:2]) < min_hr_side(scale):
            side = min_hr_side(scale)
            raise ValueError(f"{name}/{pair.name} is {pair.hr.shape[1]}x{pair.hr.shape[0]}; expected at least "
                             f"{side}x{side} to score at x{scale}")  # fmt: skip
        sr = upscale(model, pair.lr, scale, ensemble, tile)
        if sr.shape != pair.hr.shape:
            raise ValueError(f"{name}/{pair.name}: output has shape {sr.shape}; expected {pair.hr.shape}")
        images.append({"name": pair.name, "psnr": psnr_y(sr, pair.hr, scale), "ssim": ssim_y(sr, pair.hr, scale)})
    return images


def evaluate(
    model: nn.Module | PackedModel | None,
    names: Sequence[str],
    scale: int,
    data_root: str | os.PathLike | None = None,
    self_ensemble: bool = False,
    method: str | None = None,
    tile: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """PSNR/SSIM (Y channel) of `model` on each dataset in `names`; `model=None` evaluates bicubic upsampling.

    Returns one dict per dataset: method, name, scale, psnr and ssim (means over its images), and images, a list of
    {name, psnr, ssim}. `method` labels the row in `format_table` ("Bicubic" or the model's class name by default). A
    float model runs in eval mode without gradients; its training mode is restored after. A packed model
    (`binsr.engine.inference`) runs as it is. `tile` is `upscale`'s; `progress` shows a bar over each set's images.
    """
    if scale < 2:
        raise ValueError(f"scale={scale} is not valid; expected an upscaling factor of 2 or more")
    if model is not None and getattr(model, "scale", None) != scale:
        raise ValueError(f"model.scale={getattr(model, 'scale', None)!r} but scale={scale}; expected them equal")
    names = [names] if isinstance(names, str) else list(names)
    method = method or ("Bicubic" if model is None else type(model).__name__)
    was_training = isinstance(model, nn.Module) and model.training
    if isinstance(model, nn.Module):
        model.eval()
    try:
        with torch.no_grad():
            per_set = [
                (name, _evaluate_set(model, name, scale, data_root, self_ensemble, tile, progress)) for name in names
            ]
    finally:
        if was_training:
            model.train()
    return [
        {
            "method": method,
            "name": name,
            "scale": scale,
            "psnr": float(np.mean([image["psnr"] for image in images])),
            "ssim": float(np.mean([image["ssim"] for image in images])),
            "images": images,
        }
        for name, images in per_set
    ]


def format_table(results: list[dict]) -> str:
    """A Markdown table as in SR papers: one row per (method, scale), one PSNR/SSIM column per dataset."""
    sets = list(dict.fromkeys(r["name"] for r in results))
    rows = list(dict.fromkeys((r["method"], r["scale"]) for r in results))
    cell = {(r["method"], r["scale"], r["name"]): f"{r['psnr']:.2f}/{r['ssim']:.4f}" for r in results}
    lines = [
        "| Method | Scale | " + " | ".join(f"{name} PSNR/SSIM" for name in sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for method, scale in rows:
        cells = " | ".join(cell.get((method, scale, name), "-") for name in sets)
        lines.append(f"| {method} | x{scale} | {cells} |")
    return "\n".join(lines)


def write_csv(results: list[dict], path: str | os.PathLike) -> None:
    """One row per image: method, scale, dataset, image, psnr, ssim."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "scale", "dataset", "image", "psnr", "ssim"])
        for r in results:
            for image in r["images"]:
                writer.writerow([r["method"], r["scale"], r["name"], image["name"], image["psnr"], image["ssim"]])


def write_json(results: list[dict], path: str | os.PathLike) -> None:
    """The results as `evaluate` returns them, except that a PSNR of +inf (an exact reconstruction), which JSON
    cannot hold, is written as null."""
    with open(path, "w") as f:
        json.dump(_finite_or_none(results), f, indent=2, allow_nan=False)


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(item) for item in value]
    return value
