"""The XNOR engine's kernels and which one runs: BinaryConv2d's forward on bit-packed maps, and its fused output stage.

The packed format (activation maps with a +1 border, `PackedConv`) is `binsr.engine.packing`'s; its names are
re-exported here, so that `xnor.pack_conv`, `xnor.n_words` and the others keep working.

The fused stage computes, per output, float32(accumulator) * alpha -> RPReLU -> + residual in float32 in the
torch op order (never contracted to FMA, which would round differently), and thresholds the result into the
next layer's packed map, so a binary body reads and writes one float map per unit and nothing else.

Three kernels compute all this from the same packed maps and weights, bit-exact alike; `setup` picks one per
process (a `Kernel`), by default the first of KERNELS that this machine runs:

    "avx512"    C (`xnor_native.c`, loaded by `binsr.engine.native`), AVX-512 with VPOPCNTDQ: a zmm holds one weight
                word of 16 (uint32) or 8 (uint64) output channels; one activation word, broadcast, is xored with it
                and vpopcnt-ed
    "avx2"      the same C with ymm vectors and the popcount as two 4-bit table lookups (vpshufb)
    "portable"  numba (`binsr.engine.xnor_portable`), any CPU and no compiler: 4 output channels at a time with scalar
                popcounts

The C kernels are compiled on first use and cached (`binsr.engine.native`); numba is imported only for the portable one.
Every kernel uses as many threads as torch (torch.set_num_threads).
"""

from __future__ import annotations

import ctypes
import functools
import math
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from binsr.engine import native
from binsr.engine.packing import (  # noqa: F401 (the format's names, re-exported: notebooks use them as xnor.NAME)
    KERNEL_SIZES,
    VECTOR_BYTES,
    PackedConv,
    address,
    empty_packed,
    n_words,
    pack_conv,
    word_bits,
    word_dtype,
)

KERNELS: tuple[str, ...] = ("avx512", "avx2", "portable")


# ---- the kernels -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kernel:
    """One XNOR kernel: its name and, for a native one, its library (`binsr.engine.native.build`); the portable kernel
    has none and runs `binsr.engine.xnor_portable`. Its methods fill arrays that the functions below have checked and
    allocated, on torch's thread count."""

    name: str
    library: ctypes.CDLL | None

    def pack(self, x: np.ndarray, threshold: np.ndarray, packed: np.ndarray) -> None:
        """The interior of `packed` from an (N, H, W, C) map."""
        if self.library is None:
            from binsr.engine import xnor_portable  # numba takes a second to import: only for this kernel

            xnor_portable.pack(x, threshold, packed, _threads())
        else:
            self.library.binsr_pack(address(x), address(threshold), address(packed), *x.shape, _threads())

    def pack_nchw(self, x: np.ndarray, threshold: np.ndarray, packed: np.ndarray) -> None:
        """The interior of `packed` from an (N, C, H, W) map."""
        if self.library is None:
            self.pack(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), threshold, packed)
        else:
            self.library.binsr_pack_nchw(address(x), address(threshold), address(packed), *x.shape, _threads())

    def to_nchw(self, x: np.ndarray, out: np.ndarray) -> None:
        """`out` (N, C, H, W) from `x` (N, H, W, C)."""
        if self.library is None:
            np.copyto(out, x.transpose(0, 3, 1, 2))
        else:
            self.library.binsr_to_nchw(address(x), address(out), *x.shape, _threads())

    def conv(
        self,
        packed: np.ndarray,
        conv: PackedConv,
        residual: np.ndarray | None,
        next_threshold: np.ndarray | None,
        out: np.ndarray,
        nxt: np.ndarray | None,
    ) -> None:
        """`xnor_conv` into `out`, and into `nxt` (the next layer's packed map) with `next_threshold`."""
        if self.library is None:
            from binsr.engine import xnor_portable

            xnor_portable.conv(packed, conv, residual, next_threshold, out, nxt, _threads())
            return
        weights, base, alpha, rprelu = conv.pointers
        n_img, height, width, out_channels = out.shape
        call = native.ConvCall(
            act=address(packed),
            weights=weights,
            base=base,
            alpha=alpha,
            rprelu=rprelu,
            residual=address(residual),
            out=address(out),
            next_threshold=address(next_threshold),
            next=address(nxt),
            n_img=n_img,
            height=height,
            width=width,
            channels=conv.in_channels,
            out_channels=out_channels,
            opad=conv.bits.shape[3],
            k=conv.kernel_size,
            threads=_threads(),
        )
        self.library.binsr_conv(ctypes.byref(call))


_current: Kernel | None = None  # chosen by setup


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
    global _current
    if kernel == "auto":
        kernel = next(name for name in KERNELS if kernel_problem(name) is None)
    elif kernel_problem(kernel) is not None:
        raise ValueError(f"XNOR kernel {kernel!r} cannot run here: {kernel_problem(kernel)}")
    _current = Kernel(kernel, None if kernel == "portable" else native.build(kernel))
    return describe()


def current() -> Kernel:
    """The kernel that packed convs run on (chosen by `setup`, "auto" if it was not called; a fall-back to the
    portable kernel on an x86 CPU with AVX2 then warns once, with the reason)."""
    if _current is None:
        line = setup()
        if _current.name == "portable" and not native.missing_features("avx2"):
            warnings.warn(line, RuntimeWarning, stacklevel=3)
    return _current


def current_kernel() -> str:
    """The name of the kernel that packed convs run on (see `current`)."""
    return current().name


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


def _aligned_empty(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised float32 array starting on a VECTOR_BYTES boundary (numpy guarantees only 16 bytes), so
    that the native kernels may write it with whole-vector non-temporal stores."""
    size = math.prod(shape)  # not np.prod: 9 us a call, half of a small conv's overhead
    buffer = np.empty(size + VECTOR_BYTES // 4, np.float32)
    start = (-address(buffer) % VECTOR_BYTES) // 4
    return buffer[start : start + size].reshape(shape)


# ---- packing --------------------------------------------------------------------------------------------------


def pack_activations(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """RSign and pack an (N, H, W, C) float32 map (bit = x > threshold[c]) into an (N, H+2, W+2, words) map."""
    threshold = np.ascontiguousarray(threshold, np.float32)
    if x.ndim != 4 or x.shape[3] != threshold.size or threshold.size == 0 or x.dtype != np.float32:
        raise ValueError(f"expected an (N, H, W, {threshold.size}) float32 array, got {x.shape} {x.dtype}")
    x = np.ascontiguousarray(x)
    packed = empty_packed(x.shape[0], x.shape[1], x.shape[2], threshold.size)
    current().pack(x, threshold, packed)
    return packed


def pack_activations_nchw(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """`pack_activations` of an (N, C, H, W) float32 map as torch's maps lie: the native kernels read it in place,
    where an NHWC copy of a 32x320x320 map took longer than the pack and the conv together."""
    threshold = np.ascontiguousarray(threshold, np.float32)
    if x.ndim != 4 or x.shape[1] != threshold.size or threshold.size == 0 or x.dtype != np.float32:
        raise ValueError(f"expected an (N, {threshold.size}, H, W) float32 array, got {x.shape} {x.dtype}")
    x = np.ascontiguousarray(x)
    n, channels, height, width = x.shape
    packed = empty_packed(n, height, width, channels)
    current().pack_nchw(x, threshold, packed)
    return packed


def to_nchw(x: np.ndarray) -> np.ndarray:
    """A C-contiguous (N, C, H, W) copy of an (N, H, W, C) float32 map, e.g. a binary conv's output for torch
    (natively 0.3x the time of numpy's transposing copy; the strides are the standard ones even for 1x1 maps)."""
    if x.ndim != 4 or x.dtype != np.float32:
        raise ValueError(f"expected an (N, H, W, C) float32 array, got {x.shape} {x.dtype}")
    x = np.ascontiguousarray(x)
    n, height, width, channels = x.shape
    out = np.empty((n, channels, height, width), np.float32)
    current().to_nchw(x, out)
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
    current().conv(packed, conv, residual, next_threshold, out, nxt)
    return out, nxt


def xnor_accumulators(packed: np.ndarray, conv: PackedConv) -> np.ndarray:
    """The integer accumulators conv(x_b, sign W) with zero padding, (N, H, W, O) int32."""
    raw = replace(conv, alpha=np.ones(conv.out_channels, np.float32), rprelu=None)
    return xnor_conv(packed, raw)[0].astype(np.int32)
