"""Tiled inference: any image size in bounded memory, with the pixels of one pass over the whole image.

The LR image is cut into `tile` x `tile` pieces; each runs with `pad` pixels of its neighbours around it (as
EDSR's `chop` overlaps its pieces) and only its own part of the output is kept. When `pad` covers the network's
context, a kept output pixel is computed from exactly the input of the untiled run (where a piece meets the
image border it is zero-padded as the whole image is). The arithmetic is the same up to rounding: oneDNN blocks
a convolution differently at different image sizes, and an x3 resize computes its sample positions from the
absolute pixel index, so a value can differ by an ulp or two (~1e-7). That moves a uint8 pixel only when the
value lies that close to a rounding boundary; tests/test_tiling.py finds the float models' pixels equal, and
with torch's own convolution every float equal. A binary layer can amplify such an ulp when a value lies that
close to its sign threshold (1 value in 6,000 moved by one level in a test).

The context of a stack of convolutions is at most the sum of their radii (a residual path only shortens it),
plus one pixel for a bilinear skip. Counting every conv as if it ran at LR resolution over-counts those after
the upsampler: a little more overlap, never a wrong pixel. Global pooling (squeeze-and-excitation) has no
finite context; such a model still runs tiled on large images, with `GLOBAL_PAD` of overlap, and its output
then differs slightly from an untiled run.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from binsr.nn.binary import BinaryConv2d

if TYPE_CHECKING:
    from binsr.engine.runtime import PackedModel

TILE = 256  # LR tile side: ~0.4 GB peak for a 32x8 EDSR at x2, and no slower per pixel than larger tiles
# The smallest tile `binsr upscale/eval --tile` accept: each tile runs with `context` pixels of overlap on every side
# (20 for a 32x8 EDSR), so a 1-pixel tile computes a 41x41 patch per pixel (a 50x40 image took over 10 minutes).
MIN_TILE = 32
AUTO_ABOVE = 512 * 512  # LR pixels above which tiling is automatic: Set5 ... Urban100 at x2 run whole
BICUBIC_CONTEXT = 3  # MATLAB bicubic (binsr.data.imresize) upsampling reads 2 LR pixels either side, +1 for rounding
GLOBAL_PAD = 32  # overlap for a model without finite context


def context(model: nn.Module | PackedModel) -> int | None:
    """LR pixels of context any output pixel of `model` can depend on (an upper bound); None when unbounded. A
    packed model (`binsr.engine.runtime`) counts its ops as this counts the modules they came from."""
    if not isinstance(model, nn.Module):
        return model.context()
    radius = 0
    for module in model.modules():
        if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            return None
        if isinstance(module, nn.Conv2d):
            radius += max(d * (k - 1) // 2 for k, d in zip(module.kernel_size, module.dilation, strict=True))
        elif isinstance(module, BinaryConv2d):
            radius += (module.kernel_size - 1) // 2
        elif isinstance(module, nn.Upsample):
            radius += 1
    return radius


def auto_tile(height: int, width: int, tile: int | None) -> int:
    """The tile side to use: `tile` as given (0: none), or for None, TILE above AUTO_ABOVE LR pixels, else 0."""
    if tile is None:
        return TILE if height * width > AUTO_ABOVE else 0
    if tile < 0:
        raise ValueError(f"tile={tile} is not valid; expected a tile side in pixels, or 0 for no tiling")
    return tile


def tiled(
    fn: Callable[[np.ndarray], np.ndarray], image: np.ndarray, scale: int, tile: int, pad: int, progress: bool = False,
    workers: int = 1,
) -> np.ndarray:  # fmt: skip
    """`fn(image)` computed tile by tile, where `fn` maps an (h, w, ...) array to its (h*scale, w*scale, ...)
    upscaled version; equal to `fn(image)` when `pad` covers fn's context. `workers` > 1 runs that many tiles at
    a time on threads, each with torch's thread count (so `fn` must be thread-safe, and release the GIL in its
    heavy parts as torch's ops do)."""
    height, width = image.shape[:2]
    corners = [(y, x) for y in range(0, height, tile) for x in range(0, width, tile)]

    def run(corner: tuple[int, int]) -> np.ndarray:
        y, x = corner
        return fn(image[max(y - pad, 0) : y + tile + pad, max(x - pad, 0) : x + tile + pad])

    out = None
    # A new thread's OpenMP count is the machine's until torch first asks for it: ask, so that it is torch's.
    with ThreadPoolExecutor(workers, initializer=torch.get_num_threads) as pool:
        pieces = pool.map(run, corners) if workers > 1 else map(run, corners)
        bar = tqdm(
            zip(corners, pieces, strict=True),
            total=len(corners),
            desc="tiles",
            unit="tile",
            leave=False,
            disable=not progress,
        )
        for (y, x), piece in bar:
            y0, x0 = max(y - pad, 0), max(x - pad, 0)
            if out is None:
                out = np.empty((height * scale, width * scale, *piece.shape[2:]), piece.dtype)
            rows = slice((y - y0) * scale, (y - y0 + min(tile, height - y)) * scale)
            cols = slice((x - x0) * scale, (x - x0 + min(tile, width - x)) * scale)
            out[y * scale : (y + tile) * scale, x * scale : (x + tile) * scale] = piece[rows, cols]
    return out
