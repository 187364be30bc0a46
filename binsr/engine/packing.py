"""The bit-packed format of the XNOR engine: packed activation maps and packed convolutions (`PackedConv`).

Activations are packed along channels: pixel (y, x) holds one uint32 word for C <= 32 channels, else ceil(C/64)
uint64 words, bit b of word w being +1 iff x[bits*w + b] > threshold (RSign exactly, so NaN and ties give -1 =
bit 0). Weights are packed the same way per output channel and tap. For ±1 vectors of length K,
a . b = K - 2 popcount(a XOR b).

Zero padding has no 1-bit code, so a packed map carries a one-pixel border of +1 and the kernel subtracts what
the border contributed: an out-of-image tap of output channel o adds sum_c sign(W[o, c, tap]), a constant
per output channel and border case (first/last row, first/last column). `PackedConv.base` holds k*k*C minus
that constant, so  accumulator = base[row case, column case, o] - 2 popcount  equals F.conv2d of the ±1
tensors with zero padding exactly. Padding bits beyond C are 0 in activations and weights alike: no count.

The kernels that read this format are chosen in `binsr.engine.xnor`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

KERNEL_SIZES = (1, 3)
VECTOR_BYTES = 64  # weights hold whole 64-byte vectors of output channels (zero-padded), for the widest kernel


def word_bits(channels: int) -> int:
    """Bits per packed word: 32 for up to 32 channels (a 64-bit word would be half empty), else 64."""
    return 32 if channels <= 32 else 64


def word_dtype(channels: int) -> np.dtype:
    """The packed words' dtype for `channels` channels: uint32 or uint64."""
    return np.dtype(np.uint32 if channels <= 32 else np.uint64)


def n_words(channels: int) -> int:
    """Packed words per pixel for `channels` channels."""
    return -(-channels // word_bits(channels))


@functools.cache
def _border(channels: int) -> np.ndarray:
    """The words of a +1 pixel: a 1 bit for every real channel, 0 in the padding bits (as in the weights)."""
    bits = np.zeros(n_words(channels) * word_bits(channels), bool)
    bits[:channels] = True
    return np.packbits(bits, bitorder="little").view(f"<u{word_bits(channels) // 8}").astype(word_dtype(channels))


def empty_packed(n: int, height: int, width: int, channels: int) -> np.ndarray:
    """An (n, height+2, width+2, words) packed map with the +1 border set and the interior unset."""
    packed = np.empty((n, height + 2, width + 2, n_words(channels)), word_dtype(channels))
    border = _border(channels)
    packed[:, 0], packed[:, -1], packed[:, :, 0], packed[:, :, -1] = border, border, border, border
    return packed


@dataclass(frozen=True)
class PackedConv:
    """One BinaryConv2d in kernel form: sign(W) bits, the border table, alpha and RPReLU's (gamma, beta, zeta).

    bits: (k, k, words, O') words: bits[dy, dx, w, o] is word w of tap (dy, dx) of output channel o, channel
        bits*w + b in bit b; O' is O rounded up to whole 64-byte vectors (16 or 8 outputs), the extra outputs 0.
    base: (4, 4, O) int32 by (row case, column case); case bit 0 = first, bit 1 = last row/column.
    """

    bits: np.ndarray
    base: np.ndarray
    alpha: np.ndarray
    rprelu: np.ndarray | None  # (3, O) float32 rows gamma, beta, zeta
    in_channels: int
    kernel_size: int

    @property
    def out_channels(self) -> int:
        return self.base.shape[2]

    @functools.cached_property
    def pointers(self) -> tuple[int | None, ...]:
        """Addresses of bits, base, alpha and rprelu for the native kernels (numpy's .ctypes is slow per call)."""
        return tuple(map(address, (self.bits, self.base, self.alpha, self.rprelu)))


def pack_conv(weight: np.ndarray, alpha: np.ndarray | None = None, rprelu: np.ndarray | None = None) -> PackedConv:
    """Pack float weights (O, C, k, k) by sign (+1 iff w > 0); alpha defaults to 1 (raw accumulators)."""
    if weight.ndim != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] not in KERNEL_SIZES:
        raise ValueError(f"expected (O, C, k, k) weights with k in {KERNEL_SIZES}, got shape {weight.shape}")
    out_channels, channels, k, _ = weight.shape
    bits = word_bits(channels)
    lanes = VECTOR_BYTES * 8 // bits
    positive = np.zeros((-(-out_channels // lanes) * lanes, k, k, n_words(channels) * bits), bool)
    positive[:out_channels, :, :, :channels] = weight.transpose(0, 2, 3, 1) > 0
    words = np.packbits(positive, axis=-1, bitorder="little").view(f"<u{bits // 8}").astype(word_dtype(channels))

    tap_sums = np.where(weight > 0, 1, -1).sum(axis=1)  # (O, k, k): what a +1 border pixel adds
    base = np.empty((4, 4, out_channels), np.int32)
    for row_case in range(4):
        for col_case in range(4):
            outside = np.zeros((k, k), bool)
            if k > 1:
                outside[0, :] |= bool(row_case & 1)
                outside[-1, :] |= bool(row_case & 2)
                outside[:, 0] |= bool(col_case & 1)
                outside[:, -1] |= bool(col_case & 2)
            base[row_case, col_case] = k * k * channels - tap_sums[:, outside].sum(axis=1)

    alpha = np.ones(out_channels, np.float32) if alpha is None else np.ascontiguousarray(alpha, np.float32)
    if alpha.shape != (out_channels,):
        raise ValueError(f"alpha has shape {alpha.shape}; expected ({out_channels},)")
    if rprelu is not None:
        rprelu = np.ascontiguousarray(rprelu, np.float32)
        if rprelu.shape != (3, out_channels):
            raise ValueError(f"rprelu has shape {rprelu.shape}; expected (3, {out_channels})")
    return PackedConv(np.ascontiguousarray(words.transpose(1, 2, 3, 0)), base, alpha, rprelu, channels, k)


def address(array: np.ndarray | None) -> int | None:
    """The address of `array`'s first element (None for None), for the native kernels."""
    # the array interface, not array.ctypes.data: that builds a ctypes object per call (1.5 us, 5 per conv)
    return None if array is None else array.__array_interface__["data"][0]
