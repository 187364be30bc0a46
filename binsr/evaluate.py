"""Benchmark evaluation: super-resolve each LR image, then PSNR/SSIM on Y against the mod-cropped HR.

Follows BasicSR: the model's output is clamped to [0, 1] and rounded to uint8 before the metrics, and
`shave` = scale border pixels are ignored (`binsr.metrics`). `model=None` is the bicubic baseline, MATLAB
bicubic upsampling (`binsr.imresize`) of the LR image.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from binsr.data import load_images, to_tensor
from binsr.imresize import imresize
from binsr.metrics import psnr_y, ssim_y


def self_ensemble(model: nn.Module, lr: torch.Tensor) -> torch.Tensor:
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
def upscale(model: nn.Module | None, lr: np.ndarray, scale: int, ensemble: bool = False) -> np.ndarray:
    """The uint8 SR image that `evaluate` scores: `model`'s output on the uint8 LR image `lr` (HxWx3), clamped
    and rounded, optionally self-ensembled; MATLAB bicubic when `model` is None."""
    if model is None:
        return imresize(lr, scale)
    device = next(model.parameters(), torch.empty(0)).device
    x = to_tensor(lr[None]).to(device)
    y = self_ensemble(model, x) if ensemble else model(x)
    return (y.clamp(0, 1) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).contiguous().cpu().numpy()


def _evaluate_set(
    model: nn.Module | None, name: str, scale: int, data_root: str | os.PathLike | None, ensemble: bool
) -> list[dict]:
    images = []
    for pair in load_images(name, scale, data_root):
        sr = upscale(model, pair.lr, scale, ensemble)
        if sr.shape != pair.hr.shape:
            raise ValueError(f"{name}/{pair.name}: output has shape {sr.shape}; expected {pair.hr.shape}")
        images.append({"name": pair.name, "psnr": psnr_y(sr, pair.hr, scale), "ssim": ssim_y(sr, pair.hr, scale)})
    return images


def evaluate(
    model: nn.Module | None,
    names: Sequence[str],
    scale: int,
    data_root: str | os.PathLike | None = None,
    self_ensemble: bool = False,
    method: str | None = None,
) -> list[dict]:
    """PSNR/SSIM (Y channel) of `model` on each dataset in `names`; `model=None` evaluates bicubic upsampling.

    Returns one dict per dataset: method, name, scale, psnr and ssim (means over its images), and images,
    a list of {name, psnr, ssim}. `method` labels the row in `format_table` ("Bicubic" or the model's class
    name by default). The model runs in eval mode without gradients; its training mode is restored after.
    """
    if model is not None and getattr(model, "scale", None) != scale:
        raise ValueError(f"model.scale={getattr(model, 'scale', None)!r} but scale={scale}; expected them equal")
    names = [names] if isinstance(names, str) else list(names)
    method = method or ("Bicubic" if model is None else type(model).__name__)
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        with torch.no_grad():
            per_set = [(name, _evaluate_set(model, name, scale, data_root, self_ensemble)) for name in names]
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
    """The results exactly as `evaluate` returns them."""
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
