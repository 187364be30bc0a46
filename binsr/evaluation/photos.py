"""`binsr upscale`: super-resolve your own images with a shipped or trained model, at any size.

Anything PIL reads goes in (grey, palette, 16-bit, with alpha, a JPEG turned upright by its EXIF orientation)
and comes out as PNG: the colour through the model, an alpha channel through MATLAB bicubic, since the models
never saw transparency. Large images run in tiles (`binsr.engine.tiling`), so memory stays bounded. `compare` also
writes bicubic (left) beside the model (right) at the output size, to see what the model adds. No input is ever
written over, and an output that exists is replaced only when asked (`overwrite`); both are checked before any
image is read.
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

from binsr.base.device import resolve_device
from binsr.base.files import atomic_write, ensure_dir
from binsr.data.images import IMAGE_SUFFIXES, open_image, to_rgb8
from binsr.engine.inference import load
from binsr.evaluation.evaluate import upscale

if TYPE_CHECKING:
    from binsr.engine.runtime import PackedModel

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
    """Write, then rename: an interrupted run or a full disk never leaves a truncated PNG, or a temporary file."""
    with atomic_write(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG", compress_level=PNG_LEVEL)


def output_paths(path: Path, out_dir: Path, scale: int, compare: bool = False) -> list[Path]:
    """What `upscale_photo` writes for the image at `path`: out_dir/<stem>-x<scale>.png, and -compare.png."""
    out = out_dir / f"{path.stem}-x{scale}.png"
    return [out, out.with_name(f"{out.stem}-compare.png")] if compare else [out]


def upscale_photo(
    model: nn.Module | PackedModel, path: Path, out_dir: Path, compare: bool = False, tile: int | None = None,
    progress: bool = False,
) -> list[Path]:  # fmt: skip
    """Write `output_paths(path, out_dir, model.scale, compare)`, the model's output and the comparison; return them."""
    img = open_image(path)
    rgb, alpha = to_rgb8(img), _alpha(img)
    del img  # a large photo's decoded copy is not needed again
    scale = model.scale
    written = output_paths(path, out_dir, scale, compare)
    sr = upscale(model, rgb, scale, tile=tile, progress=progress)
    _save_png(sr if alpha is None else np.dstack([sr, upscale(None, alpha, scale, tile=tile)]), written[0])
    if compare:
        gap = np.full((sr.shape[0], COMPARE_GAP, 3), 255, np.uint8)
        _save_png(np.concatenate([upscale(None, rgb, scale, tile=tile), gap, sr], axis=1), written[1])
    return written


def _file_id(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_dev, stat.st_ino


def _check_outputs(inputs: list[Path], outputs: list[Path], overwrite: bool) -> None:
    """Refuse to write over an input (the same file, whatever links lead to it), or over any existing file unless
    `overwrite`."""
    sources = {_file_id(path): path for path in inputs}
    for out in outputs:
        if not out.exists():
            continue
        source = sources.get(_file_id(out))
        if source is not None:
            raise ValueError(f"output {out} would write over the input {source}; expected another output folder")
        if not overwrite:
            raise ValueError(f"output {out} already exists; expected --overwrite to replace it")


def upscale_photos(
    inputs: Sequence[str | os.PathLike],
    model: str,
    out_dir: str | os.PathLike,
    compare: bool = False,
    tile: int | None = None,
    device: str = "auto",
    engine: str = "auto",
    kernel: str = "auto",
    overwrite: bool = False,
) -> list[Path]:
    """Super-resolve every image `inputs` names with `model` (a shipped name, a checkpoint or a .binsr file) into
    `out_dir` on `engine` (`binsr.engine.inference`, which says on stderr which engine runs), with a progress bar over
    images and tiles; the paths written. Refused before any work when an output would be an input, or exists and
    `overwrite` is not set."""
    resolve_device(device)  # a device this machine lacks is named before any file is looked at
    files = input_files(inputs)
    seen: dict[str, Path] = {}
    for path in files:
        if path.stem in seen:
            raise ValueError(f"inputs {seen[path.stem]} and {path} share the name {path.stem!r}; expected distinct "
                             "names, as outputs are named <name>-x<scale>.png")  # fmt: skip
        seen[path.stem] = path
    net, line = load(model, engine, device, kernel)
    out_dir = ensure_dir(out_dir)
    _check_outputs(files, [out for path in files for out in output_paths(path, out_dir, net.scale, compare)], overwrite)
    print(line, file=sys.stderr)  # once the outputs are cleared: a refusal stays one line
    written = []
    for path in tqdm(files, desc="images", unit="image", disable=len(files) < 2):
        written += upscale_photo(net, path, out_dir, compare, tile, progress=True)
    return written
