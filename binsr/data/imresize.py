"""MATLAB-compatible bicubic `imresize`, written from the definition of MATLAB's algorithm.

Its equations are lettered, (a)-(e), to keep them apart from the numbered equations of the network.

SR benchmarks define the low-resolution input as MATLAB's `imresize(HR, 1/s, 'bicubic')`. Other bicubics
(PIL, OpenCV, torch) use another kernel or no antialiasing and give other LR images, so we reproduce MATLAB's:

(a)  cubic kernel, Keys a = -0.5:  k(x) = 1.5|x|^3 - 2.5|x|^2 + 1          for |x| <= 1
                                          -0.5|x|^3 + 2.5|x|^2 - 4|x| + 2   for 1 < |x| <= 2
(b)  antialiasing when shrinking (scale < 1): k_s(x) = scale * k(scale * x), support widened to 4 / scale
(c)  output pixel x (1-based) samples the input at u = x / scale + 0.5 * (1 - 1 / scale)
(d)  taps outside the image mirror symmetrically (..., 2, 1, | 1, 2, ..., n, | n, n-1, ...)
(e)  weights of each output pixel are normalised to sum to 1

The image is resized one axis at a time, rows first (MATLAB does the axis with the smaller scale first,
and rows when the scales tie). For uint8 input MATLAB stores each pass as uint8, so we round and clip
after every pass: this matches MATLAB's Set5/Set14 x2-x4 LR files exactly, while rounding only at the
end (as float ports do) matches just 86-90 % of their pixels.
"""

from __future__ import annotations

import math

import numpy as np


def cubic(x: np.ndarray) -> np.ndarray:
    """Eq. (a): the Keys cubic convolution kernel with a = -0.5."""
    ax = np.abs(x)
    near = (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
    far = (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2))
    return near + far


def contributions(in_len: int, out_len: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. (b)-(e) along one axis: (weights, indices), both (out_len, taps); output = sum of weights * input."""
    shrink = min(scale, 1.0)  # eq. (b): a kernel stretched by 1/scale low-pass filters before decimation
    width = 4.0 / shrink
    u = np.arange(1, out_len + 1) / scale + 0.5 * (1 - 1 / scale)  # eq. (c), 1-based like MATLAB
    left = np.floor(u - width / 2)
    taps = math.ceil(width) + 2
    index = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    weights = shrink * cubic(shrink * (u[:, None] - index))
    weights /= weights.sum(axis=1, keepdims=True)  # eq. (e)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])  # eq. (d)
    return weights, mirror[(index.astype(np.int64) - 1) % (2 * in_len)]


def _resize_axis(img: np.ndarray, axis: int, out_len: int, scale: float, as_uint8: bool) -> np.ndarray:
    weights, index = contributions(img.shape[axis], out_len, scale)
    lines = np.moveaxis(img, axis, 0)
    flat = lines.reshape(lines.shape[0], -1)
    # One tap at a time, summed in place, keeps memory at three output-sized arrays, even for 2K images at x8.
    out = weights[:, [0]] * flat[index[:, 0]]  # float64 even for uint8 input: no float copy of the input needed
    for t in range(1, weights.shape[1]):
        out += weights[:, [t]] * flat[index[:, t]]
    if as_uint8:
        out = np.floor(np.clip(out, 0, 255) + 0.5)  # MATLAB's uint8(): saturate, round half away from zero
    return np.moveaxis(out.reshape(out_len, *lines.shape[1:]), 0, axis)


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB `imresize(img, scale, 'bicubic')` for an HxW or HxWxC uint8 or float image.

    The output is ceil(scale * H) x ceil(scale * W), as in MATLAB. uint8 in gives uint8 out (rounded and
    clipped like MATLAB); float in gives the same float dtype out, unclipped.
    """
    if scale <= 0 or not math.isfinite(scale):
        raise ValueError(f"scale={scale!r} is not valid; expected a positive finite number")
    if img.ndim not in (2, 3):
        raise ValueError(f"image has shape {img.shape}; expected HxW or HxWxC")
    as_uint8 = img.dtype == np.uint8
    if not as_uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"image dtype {img.dtype} is not supported; expected uint8 or a float dtype")
    out = img
    for axis in (0, 1):
        out = _resize_axis(out, axis, math.ceil(scale * img.shape[axis]), scale, as_uint8)
    return out.astype(img.dtype)


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom and right edges so that H and W are multiples of `scale` (the benchmark convention)."""
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale={scale!r} is not valid; expected a positive integer")
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale]
