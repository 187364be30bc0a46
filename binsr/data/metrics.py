"""PSNR and SSIM on the luma channel, the protocol SR papers report.

(1)  Y = 16 + 65.481 R + 128.553 G + 24.966 B        R, G, B in [0, 1]; Y in [16, 235] (BT.601, MATLAB rgb2ycbcr)
(2)  PSNR = 10 log10(255^2 / mean((Y_sr - Y_hr)^2))  after cropping `shave` pixels from every border
(3)  SSIM of Wang et al. with their MATLAB settings: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
     L = 255, averaged over the window positions that lie inside the image (ssim_index.m, as BasicSR)

Y is kept as a float, not rounded to uint8 as MATLAB's rgb2ycbcr does for uint8 input; BasicSR does the
same. Rounding would lower the bicubic baseline by 0.013-0.034 dB on Set5 and 0.004-0.012 dB on Set14.
Images are uint8 HxWx3 (0..255) or float HxWx3 in [0, 1]; both give the same Y for the same colours.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966])


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Eq. (1): the Y of an HxWx3 uint8 or float-in-[0, 1] RGB image, as float64 in [16, 235]."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image has shape {img.shape}; expected HxWx3 RGB")
    rgb = img / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    return 16.0 + rgb @ _Y_WEIGHTS


# Rows converted to Y at a time: a 4000x4000 image would otherwise hold ~2 GB of float64 planes for SSIM.
STRIP = 512
# SSIM's 11x11 window: scikit-image ignores this many pixels at every border of the map, and the map at a row
# reads this many rows either side of it, so strips overlapping by it give the whole image's map exactly.
_SSIM_RADIUS = 5


def _shaved(sr: np.ndarray, hr: np.ndarray, shave: int) -> tuple[np.ndarray, np.ndarray]:
    if sr.shape != hr.shape:
        raise ValueError(f"sr has shape {sr.shape} but hr has shape {hr.shape}; expected equal shapes")
    if shave < 0 or 2 * shave >= min(sr.shape[:2]):
        raise ValueError(f"shave={shave} is not valid for a {sr.shape[0]}x{sr.shape[1]} image")
    crop = (slice(shave, sr.shape[0] - shave), slice(shave, sr.shape[1] - shave))
    return sr[crop], hr[crop]


def psnr_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """Eq. (2): PSNR in dB between the Y channels of `sr` and `hr`, ignoring `shave` border pixels."""
    sr, hr = _shaved(sr, hr, shave)
    rows = range(0, sr.shape[0], STRIP)
    squared = sum(np.sum((rgb_to_y(sr[r : r + STRIP]) - rgb_to_y(hr[r : r + STRIP])) ** 2) for r in rows)
    mse = squared / (sr.shape[0] * sr.shape[1])
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim_y(sr: np.ndarray, hr: np.ndarray, shave: int) -> float:
    """Eq. (3): SSIM between the Y channels of `sr` and `hr`, ignoring `shave` border pixels."""
    sr, hr = _shaved(sr, hr, shave)
    height, r = sr.shape[0], _SSIM_RADIUS
    if min(sr.shape[:2]) < 2 * r + 1:
        raise ValueError(f"image is {sr.shape[0]}x{sr.shape[1]} after shaving; SSIM needs at least 11x11")
    total = 0.0
    for top in range(r, height - r, STRIP):  # map rows [top, bottom), from image rows [top - r, bottom + r)
        bottom = min(top + STRIP, height - r)
        # These settings make scikit-image compute MATLAB's ssim: an 11x11 window (truncate 3.5 * sigma 1.5)
        # and population rather than sample (co)variances.
        mean = structural_similarity(
            rgb_to_y(sr[top - r : bottom + r]), rgb_to_y(hr[top - r : bottom + r]),
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255.0,
        )  # fmt: skip
        total += mean * (bottom - top)
    return float(total / (height - 2 * r))
