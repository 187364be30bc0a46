"""`binsr upscale`: super-resolve your own images with a shipped or trained model, at any size.

Anything PIL reads goes in (grey, palette, 16-bit, with alpha, a JPEG turned upright by its EXIF orientation)
and comes out as PNG: the colour through the model, an alpha channel through MATLAB bicubic, since the models
never saw transparency. Large images run in tiles (`binsr.tiling`), so memory stays bounded. `compare` also
writes bicubic (left) beside the model (right) at the output size, to see what the model adds.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from binsr.data import IMAGE_SUFFIXES, open_image, to_rgb8
from binsr.engine import load
from binsr.evaluate import upscale
from binsr.folders import ensure_dir

if TYPE_CHECKING:
    from binsr.runtime import PackedModel

COMPARE_GAP = 8  # white pixels between the two halves of a comparison
# zlib level 3, not PIL's 6: a 2000x2000 super-resolved photo took 0.51 s instead of 1.23 s to write, 5 % smaller
# (7.69 against 8.10 MB); a screenshot or comic comes out 4-10 % larger.
PNG_LEVEL = 3


def input_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files that `inputs` name: files as given, folders as their images in name order."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {item}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"input {item} does not exist; expected an image file or a folder of images")
    return files


def _alpha(img: Image.Image) -> np.ndarray | None:
    """The alpha channel (uint8 HxW) of an image that has one, including a palette's transparent colour."""
    if "A" in img.getbands() or "transparency" in img.info:
        return np.array(img.convert("RGBA").getchannel("A"))
    return None


def _save_png(image: np.ndarray, path: Path) -> None:
    """Write, then rename: an interrupted run never leaves a truncated PNG under the final name."""
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(image).save(tmp, format="PNG", compress_level=PNG_LEVEL)
    os.replace(tmp, path)


def upscale_photo(
    model: nn.Module | PackedModel, path: Path, out_dir: Path, compare: bool = False, tile: int | None = None,
    progress: bool = False,
) -> list[Path]:  # fmt: skip
    """Write out_dir/<stem>-x<scale>.png (and -compare.png when `compare`); the paths written."""
    img = open_image(path)
    rgb, alpha = to_rgb8(img), _alpha(img)
    del img  # a large photo's decoded copy is not needed again
    scale = model.scale
    sr = upscale(model, rgb, scale, tile=tile, progress=progress)
    out = out_dir / f"{path.stem}-x{scale}.png"
    _save_png(sr if alpha is None else np.dstack([sr, upscale(None, alpha, scale, tile=tile)]), out)
    if not compare:
        return [out]
    gap = np.full((sr.shape[0], COMPARE_GAP, 3), 255, np.uint8)
    side_by_side = np.concatenate([upscale(None, rgb, scale, tile=tile), gap, sr], axis=1)
    _save_png(side_by_side, out.with_name(f"{out.stem}-compare.png"))
    return [out, out.with_name(f"{out.stem}-compare.png")]


def upscale_photos(
    inputs: Sequence[str | os.PathLike],
    model: str,
    out_dir: str | os.PathLike,
    compare: bool = False,
    tile: int | None = None,
    device: str = "auto",
    engine: str = "auto",
    kernel: str = "auto",
) -> list[Path]:
    """Super-resolve every image `inputs` names with `model` (a shipped name, a checkpoint or a .binsr file) into
    `out_dir` on `engine` (`binsr.engine`, which says on stderr which engine runs), with a progress bar over
    images and tiles; the paths written."""
    files = input_files(inputs)
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise ValueError(f"inputs {seen[path.stem]} and {path} share the name {path.stem!r}; expected distinct "
                             "names, as outputs are named <name>-x<scale>.png")  # fmt: skip
        seen[path.stem] = path
    net, line = load(model, engine, device, kernel)
    print(line, file=sys.stderr)
    out_dir = ensure_dir(out_dir)
    written = []
    for path in tqdm(files, desc="images", unit="image", disable=len(files) < 2):
        written += upscale_photo(net, path, out_dir, compare, tile, progress=True)
    return written
