"""Image sets for training and evaluation, and a reproducible random patch sampler.

A dataset is named in one of three ways (checked in this order):

1. a built-in set of scikit-image's bundled photographs, which work offline (`PHOTO_SETS`);
2. a folder: `<folder>/HR/*.png` (EDSR/BasicSR layout) or images directly in `<folder>` (T91's layout);
3. the name of such a folder under the data root: `data_root`, else `$BINSR_DATA`, else `../shared/data`
   beside the project, e.g. "Set5", "Set14", "B100", "Urban100", "Manga109", "DIV2K", "T91".

HR images are mod-cropped to a multiple of the scale. The LR image is `<folder>/LR_bicubic/X<s>/<stem>x<s>.png`
when that file exists, else MATLAB bicubic (`binsr.data.imresize`) of the cropped HR, cached as a PNG under
`$XDG_CACHE_HOME/binsr/lr` (default `~/.cache/binsr/lr`) keyed by the HR file's path, size and mtime.
Nothing is ever written inside a dataset folder. Every image is returned as uint8 HxWx3.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import skimage.data
import torch
from PIL import Image, ImageOps

from binsr.base.files import atomic_write
from binsr.data.imresize import imresize, modcrop

# scikit-image's photographs that ship inside the wheel (others need a pooch download). The test set
# is kept small because CI evaluates on it; grayscale photos become 3 equal channels.
PHOTO_SETS: dict[str, tuple[str, ...]] = {
    "photos-train": (
        "astronaut",
        "rocket",
        "immunohistochemistry",
        "hubble_deep_field",
        "moon",
        "coins",
        "page",
        "brick",
        "grass",
        "gravel",
        "cell",
    ),
    "photos-test": ("chelsea", "coffee", "camera", "text"),
}
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclass(frozen=True, eq=False)
class SRPair:
    """One training/test image: `hr` uint8 HxWx3 mod-cropped, `lr` uint8 (H/s)x(W/s)x3."""

    name: str
    hr: np.ndarray
    lr: np.ndarray


def to_rgb8(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode as uint8 HxWx3: grey to 3 channels, alpha dropped, palettes expanded, 16-bit to 8."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # PIL would clip 16-bit values at 255 when converting, so rescale 0..65535 to 0..255 ourselves.
        grey = np.clip(np.floor(np.asarray(img, dtype=np.float64) / 257 + 0.5), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.array(img.convert("RGB"))


def open_image(path: str | os.PathLike) -> Image.Image:
    """The decoded image at `path`, turned upright as its EXIF orientation says (photos from phones); a float image
    (a float TIFF) with values in [0, 1] as 8-bit grey. A file that is not a readable image, or claims more pixels
    than PIL's decompression-bomb limit, is a one-line ValueError."""
    try:
        with Image.open(path) as img:
            img.load()  # decode now, so a truncated file fails here and not later
            img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    return _float_as_grey8(img, path) if img.mode == "F" else img


def _float_as_grey8(img: Image.Image, path: str | os.PathLike) -> Image.Image:
    """PIL would clip floats in [0, 1] to 0 or 1 of 255, a black image; scale them, and refuse other floats."""
    values = np.asarray(img, dtype=np.float64)
    finite = bool(np.isfinite(values).all())
    if not (finite and values.min(initial=0) >= 0 and values.max(initial=0) <= 1):
        found = f"from {values.min():g} to {values.max():g}" if finite else "NaN or infinite values"
        raise ValueError(f"cannot read image {path}: it holds floats {found}; expected floats in [0, 1]")
    return Image.fromarray(np.round(values * 255).astype(np.uint8))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as uint8 HxWx3 (upright; grey to 3 channels, alpha dropped, 16-bit to 8-bit)."""
    return to_rgb8(open_image(path))


def _photo(name: str) -> np.ndarray:
    img = getattr(skimage.data, name)()
    return np.repeat(img[:, :, None], 3, axis=2) if img.ndim == 2 else img


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path | None:
    """The benchmark data folder: `data_root`, else $BINSR_DATA, else ../shared/data if it exists, else None."""
    chosen = data_root if data_root is not None else os.environ.get("BINSR_DATA")
    if chosen is None:
        return DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else None
    if not Path(chosen).is_dir():
        raise FileNotFoundError(f"data root {chosen} is not a folder")
    return Path(chosen)


def _hr_folder(folder: Path) -> Path:
    return folder / "HR" if (folder / "HR").is_dir() else folder


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def dataset_names(data_root: str | os.PathLike | None = None) -> list[str]:
    """Names `load_images` accepts right now: the built-in photo sets, then the image sets under the data root."""
    root = resolve_data_root(data_root)
    found = [] if root is None else [d.name for d in sorted(root.iterdir()) if d.is_dir()]
    return list(PHOTO_SETS) + [name for name in found if _image_files(_hr_folder(root / name))]


def _find_folder(name_or_path: str | os.PathLike, data_root: str | os.PathLike | None) -> Path:
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    root = resolve_data_root(data_root)
    if root is not None and (root / name_or_path).is_dir():
        return root / name_or_path
    raise FileNotFoundError(
        f"dataset {str(name_or_path)!r} not found; expected one of {', '.join(PHOTO_SETS)}, "
        f"a folder, or a folder under the data root ({root})"
    )


def _cached_bicubic_lr(hr_path: Path, hr: np.ndarray, scale: int) -> np.ndarray:
    stat = hr_path.stat()
    key = hashlib.sha256(f"{hr_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{scale}".encode()).hexdigest()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "binsr" / "lr"
    cached = cache / f"{key[:32]}.png"
    if cached.is_file():
        return read_image(cached)
    lr = imresize(hr, 1 / scale)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_write(cached) as tmp:  # a concurrent run never reads a half-written file
            Image.fromarray(lr).save(tmp, format="PNG")
    except OSError as err:
        warnings.warn(f"could not cache bicubic LR in {cache}: {err}", stacklevel=3)
    return lr


def _folder_pair(hr_path: Path, folder: Path, scale: int) -> SRPair:
    hr = read_image(hr_path)
    if min(hr.shape[:2]) < scale:
        size = f"{hr.shape[1]}x{hr.shape[0]}"
        raise ValueError(f"image {hr_path} is {size}; expected at least {scale}x{scale} pixels at x{scale}")
    hr = modcrop(hr, scale)
    lr_path = folder / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
    lr = read_image(lr_path) if lr_path.is_file() else _cached_bicubic_lr(hr_path, hr, scale)
    expected = (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    if lr.shape != expected:
        raise ValueError(f"{lr_path} has shape {lr.shape}; expected {expected} (mod-cropped HR / {scale})")
    return SRPair(hr_path.stem, hr, lr)


def iter_images(
    name_or_path: str | os.PathLike, scale: int, data_root: str | os.PathLike | None = None
) -> Iterator[SRPair]:
    """The (HR, LR) pairs of a dataset at `scale`, in file-name order, one at a time (for large images)."""
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale={scale!r} is not valid; expected a positive integer")
    if str(name_or_path) in PHOTO_SETS:
        for name in PHOTO_SETS[str(name_or_path)]:
            hr = modcrop(_photo(name), scale)
            yield SRPair(name, hr, imresize(hr, 1 / scale))
        return
    folder = _find_folder(name_or_path, data_root)
    files = _image_files(_hr_folder(folder))
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {_hr_folder(folder)}")
    for path in files:
        yield _folder_pair(path, folder, scale)


def dataset_size(name_or_path: str | os.PathLike, data_root: str | os.PathLike | None = None) -> int:
    """How many images `iter_images` yields for this dataset, without reading any (for a progress bar)."""
    if str(name_or_path) in PHOTO_SETS:
        return len(PHOTO_SETS[str(name_or_path)])
    return len(_image_files(_hr_folder(_find_folder(name_or_path, data_root))))


def load_images(
    name_or_path: str | os.PathLike, scale: int, data_root: str | os.PathLike | None = None
) -> list[SRPair]:
    """All (HR, LR) pairs of a dataset at `scale`, in file-name order; see the module docstring for names."""
    return list(iter_images(name_or_path, scale, data_root))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 BxHxWx3 images as a float32 Bx3xHxW tensor in [0, 1]."""
    # Converted in numpy: torch's small elementwise ops cost milliseconds each on a busy 2-core machine.
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)) / np.float32(255))


def _dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """The k-th of the 8 symmetries of the square (k in 0..7): rotate by k*90 degrees, then flip if k >= 4."""
    img = np.rot90(img, k % 4)
    return img[:, ::-1] if k >= 4 else img


class PatchSampler:
    """Random aligned LR/HR patch batches; `batch(step)` depends only on (seed, step), so resuming is exact.

    Each patch picks an image uniformly, a uniform crop position, and (if `augment`) one of the 8 flips and
    90-degree rotations. Images whose LR side is shorter than `lr_patch` are skipped with a warning.
    """

    def __init__(
        self,
        pairs: list[SRPair],
        scale: int,
        lr_patch: int = 48,
        batch_size: int = 16,
        seed: int = 0,
        augment: bool = True,
    ):
        for pair in pairs:
            if pair.hr.shape != (pair.lr.shape[0] * scale, pair.lr.shape[1] * scale, 3):
                raise ValueError(f"{pair.name}: HR {pair.hr.shape} is not LR {pair.lr.shape} times scale {scale}")
        small = [pair.name for pair in pairs if min(pair.lr.shape[:2]) < lr_patch]
        if small:
            warnings.warn(f"skipping images smaller than a {lr_patch}px LR patch: {', '.join(small)}", stacklevel=2)
        self.pairs = [pair for pair in pairs if min(pair.lr.shape[:2]) >= lr_patch]
        if not self.pairs:
            raise ValueError(f"no image is large enough for lr_patch={lr_patch} (of {len(pairs)} images)")
        self.scale, self.lr_patch, self.batch_size = scale, lr_patch, batch_size
        self.seed, self.augment = seed, augment

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr, hr) float32 in [0, 1], shapes (B, 3, p, p) and (B, 3, p*s, p*s), for training step `step`."""
        rng = np.random.default_rng([self.seed, step])
        p, s = self.lr_patch, self.scale
        lrs, hrs = [], []
        for _ in range(self.batch_size):
            pair = self.pairs[rng.integers(len(self.pairs))]
            y = int(rng.integers(pair.lr.shape[0] - p + 1))
            x = int(rng.integers(pair.lr.shape[1] - p + 1))
            lr, hr = pair.lr[y : y + p, x : x + p], pair.hr[y * s : (y + p) * s, x * s : (x + p) * s]
            if self.augment:
                k = int(rng.integers(8))
                lr, hr = _dihedral(lr, k), _dihedral(hr, k)
            lrs.append(lr)
            hrs.append(hr)
        return to_tensor(np.stack(lrs)), to_tensor(np.stack(hrs))
