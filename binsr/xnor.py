"""Bit-packed XNOR + popcount engine for BinaryConv2d: packing, the conv kernels, and their fused output stage.

Activations are packed along channels: pixel (y, x) holds one uint32 word for C <= 32 channels, else ceil(C/64)
uint64 words, bit b of word w being +1 iff x[bits*w + b] > threshold (RSign exactly, so NaN and ties give -1 =
bit 0). Weights are packed the same way per output channel and tap. For ±1 vectors of length K,
a . b = K - 2 popcount(a XOR b).

Zero padding has no 1-bit code, so a packed map carries a one-pixel border of +1 and the kernel subtracts what
the border contributed: an out-of-image tap of output channel o adds sum_c sign(W[o, c, tap]), a constant
per output channel and border case (first/last row, first/last column). `PackedConv.base` holds k*k*C minus
that constant, so  accumulator = base[row case, column case, o] - 2 popcount  equals F.conv2d of the ±1
tensors with zero padding exactly. Padding bits beyond C are 0 in activations and weights alike: no count.

The fused stage computes, per output, float32(accumulator) * alpha -> RPReLU -> + residual in float32 in the
torch op order (never contracted to FMA, which would round differently), and thresholds the result into the
next layer's packed map, so a binary body reads and writes one float map per unit and nothing else.

Three kernels compute all this from the same packed maps and weights, bit-exact alike; `setup` picks one per
process, by default the first of KERNELS that this machine runs:

    "avx512"    C (`binsr/xnor_native.c`), AVX-512 with VPOPCNTDQ: a zmm holds one weight word of 16 (uint32) or
                8 (uint64) output channels; one activation word, broadcast, is xored with it and vpopcnt-ed
    "avx2"      the same C with ymm vectors and the popcount as two 4-bit table lookups (vpshufb)
    "portable"  numba (`binsr.xnor_portable`), any CPU and no compiler: 4 output channels at a time with scalar
                popcounts

The C kernels are compiled on first use and cached (`binsr.native`); numba is imported only for the portable one.
Every kernel uses as many threads as torch (torch.set_num_threads).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from binsr import native

KERNELS: tuple[str, ...] = ("avx512", "avx2", "portable")
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
        return tuple(map(_pointer, (self.bits, self.base, self.alpha, self.rprelu)))


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


# ---- which kernel runs ----------------------------------------------------------------------------------------

_kernel: str | None = None  # chosen by setup


@functools.cache
def kernel_problem(kernel: str) -> str | None:
    """Why `kernel` cannot run on this machine (e.g. "the CPU lacks avx512vpopcntdq"), or None if it can.

    A native kernel is compiled here if its cached build is missing, so a None is a kernel ready to run.
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown XNOR kernel {kernel!r}; expected one of {', '.join(KERNELS)}")
    if kernel == "portable":
        return None
    try:
        native.build(kernel)
    except native.NativeUnavailable as error:
        return str(error)
    return None


def setup(kernel: str = "auto") -> str:
    """Choose the conv kernel of this process and return one line naming the CPU, its ISA features and the kernel.

    `kernel` is "auto" (the first of KERNELS that runs here) or a name from KERNELS, e.g. "avx2" to measure
    that path on an AVX-512 machine. A native kernel is compiled on first use and cached. `binsr bench` and
    notebook 10 call this first and print the line; code that does not gets "auto" at its first packed conv.
    Nothing else in the process changes: no environment variable, no thread setting.
    """
    global _kernel
    if kernel == "auto":
        kernel = next(name for name in KERNELS if kernel_problem(name) is None)
    elif kernel_problem(kernel) is not None:
        raise ValueError(f"XNOR kernel {kernel!r} cannot run here: {kernel_problem(kernel)}")
    _kernel = kernel
    return describe()


def current_kernel() -> str:
    """The kernel that packed convs run on (chosen by `setup`, "auto" if it was not called; a fall-back to the
    portable kernel on an x86 CPU with AVX2 then warns once, with the reason)."""
    if _kernel is None:
        line = setup()
        if _kernel == "portable" and not native.missing_features("avx2"):
            warnings.warn(line, RuntimeWarning, stacklevel=2)
    return _kernel


def describe() -> str:
    """One line: the CPU model, the ISA features found, the kernel in use, and why no faster one is."""
    kernel = current_kernel()
    why_not = [f"{name}: {kernel_problem(name) or 'not chosen'}" for name in KERNELS[: KERNELS.index(kernel)]]
    where = "numba" if kernel == "portable" else f"C, cached in {native.cache_dir()}"
    features = " ".join(sorted(native.cpu_features())) or "none of avx2/avx512"
    return f"CPU {native.cpu_model()} | ISA {features} | XNOR kernel: {kernel} ({where})" + "".join(
        f"; {reason}" for reason in why_not
    )


def _threads() -> int:
    """The engine's thread count: torch's, so that one setting governs the whole packed model."""
    return torch.get_num_threads()


def _pointer(array: np.ndarray | None) -> int | None:
    # the array interface, not array.ctypes.data: that builds a ctypes object per call (1.5 us, 5 per conv)
    return None if array is None else array.__array_interface__["data"][0]


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array starting on a VECTOR_BYTES boundary (numpy guarantees only 16 bytes), so
    that the native kernels may write it with whole-vector non-temporal stores."""
    size = math.prod(shape)  # not np.prod: 9 us a call, half of a small conv's overhead
    buffer = np.empty(size + VECTOR_BYTES // 4, np.float32)
    start = (-_pointer(buffer) % VECTOR_BYTES) // 4
    return buffer[start : start + size].reshape(shape)


# ---- packing --------------------------------------------------------------------------------------------------


def pack_activations(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """RSign and pack an (N, H, W, C) float32 map (bit = x > threshold[c]) into an (N, H+2, W+2, words) map."""
    threshold = np.ascontiguousarray(threshold, np.float32)
    if x.ndim != 4 or x.shape[3] != threshold.size or threshold.size == 0 or x.dtype != np.float32:
        raise ValueError(f"expected an (N, H, W, {threshold.size}) float32 array, got {x.shape} {x.dtype}")
    x = np.ascontiguousarray(x)
    packed = empty_packed(x.shape[0], x.shape[1], x.shape[2], threshold.size)
    if current_kernel() == "portable":
        from binsr import xnor_portable

        xnor_portable.pack(x, threshold, packed, _threads())
    else:
        native.build(current_kernel()).binsr_pack(
            _pointer(x), _pointer(threshold), _pointer(packed), *x.shape, _threads()
        )
    return packed


def pack_activations_nchw(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """`pack_activations` of an (N, C, H, W) float32 map as torch's maps lie: the native kernels read it in place,
    where an NHWC copy of a 32x320x320 map took longer than the pack and the conv together."""
    threshold = np.ascontiguousarray(threshold, np.float32)
    if x.ndim != 4 or x.shape[1] != threshold.size or threshold.size == 0 or x.dtype != np.float32:
        raise ValueError(f"expected an (N, {threshold.size}, H, W) float32 array, got {x.shape} {x.dtype}")
    if current_kernel() == "portable":
        return pack_activations(x.transpose(0, 2, 3, 1), threshold)
    x = np.ascontiguousarray(x)
    n, channels, height, width = x.shape
    packed = empty_packed(n, height, width, channels)
    native.build(current_kernel()).binsr_pack_nchw(
        _pointer(x), _pointer(threshold), _pointer(packed), n, channels, height, width, _threads()
    )
    return packed


def to_nchw(x: np.ndarray) -> np.ndarray:
    """A C-contiguous (N, C, H, W) copy of an (N, H, W, C) float32 map, e.g. a binary conv's output for torch
    (natively 0.3x the time of numpy's transposing copy; the strides are the standard ones even for 1x1 maps)."""
    if x.ndim != 4 or x.dtype != np.float32:
        raise ValueError(f"expected an (N, H, W, C) float32 array, got {x.shape} {x.dtype}")
    if current_kernel() == "portable":
        return x.transpose(0, 3, 1, 2).copy(order="C")  # a copy even where numpy deems the view contiguous (1x1)
    x = np.ascontiguousarray(x)
    n, height, width, channels = x.shape
    out = np.empty((n, channels, height, width), np.float32)
    native.build(current_kernel()).binsr_to_nchw(_pointer(x), _pointer(out), n, height, width, channels, _threads())
    return out


# ---- the conv -------------------------------------------------------------------------------------------------


def xnor_conv(
    packed: np.ndarray,
    conv: PackedConv,
    residual: np.ndarray | None = None,
    next_threshold: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """BinaryConv2d's forward on a packed map: RPReLU(float32(conv(x_b, sign W)) * alpha) (+ residual), NHWC.

    With `next_threshold`, also returns the result packed for the next binary layer (else None).
    `out` may be `residual` itself: the update is then in place.
    """
    words, dtype = n_words(conv.in_channels), word_dtype(conv.in_channels)
    if packed.ndim != 4 or packed.shape[3] != words or packed.dtype != dtype or not packed.flags.c_contiguous:
        raise ValueError(
            f"expected a C-contiguous (N, H+2, W+2, {words}) {dtype} packed map, got {packed.shape} {packed.dtype}"
        )
    shape = (packed.shape[0], packed.shape[1] - 2, packed.shape[2] - 2, conv.out_channels)
    for name, array in (("residual", residual), ("out", out)):
        if array is not None and (array.shape != shape or array.dtype != np.float32 or not array.flags.c_contiguous):
            raise ValueError(f"{name} is {array.shape} {array.dtype}; expected C-contiguous {shape} float32")
    out = _aligned_empty(shape) if out is None else out
    nxt = None
    if next_threshold is not None:
        next_threshold = np.ascontiguousarray(next_threshold, np.float32)
        if next_threshold.shape != (conv.out_channels,):
            raise ValueError(f"next_threshold has shape {next_threshold.shape}; expected ({conv.out_channels},)")
        nxt = empty_packed(*shape[:3], conv.out_channels)
    if current_kernel() == "portable":
        from binsr import xnor_portable

        xnor_portable.conv(packed, conv, residual, next_threshold, out, nxt, _threads())
    else:
        native.build(current_kernel()).binsr_conv(
            _pointer(packed),
            *conv.pointers,
            *map(_pointer, (residual, out, next_threshold, nxt)),
            *shape[:3],
            conv.in_channels,
            conv.out_channels,
            conv.bits.shape[3],
            conv.kernel_size,
            _threads(),
        )
    return out, nxt


def xnor_accumulators(packed: np.ndarray, conv: PackedConv) -> np.ndarray:
    """The integer accumulators conv(x_b, sign W) with zero padding, (N, H, W, O) int32."""
    raw = replace(conv, alpha=np.ones(conv.out_channels, np.float32), rprelu=None)
    return xnor_conv(packed, raw)[0].astype(np.int32)
