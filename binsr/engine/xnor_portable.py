"""The portable XNOR kernels: numba, for any CPU and a machine without a C compiler (`binsr.engine.packing` describes
the layouts, `binsr.engine.xnor` the arithmetic, bit-exact with the native kernels'). Imported only when the portable
kernel runs: numba takes a second and 60 MB of memory to import.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

from binsr.engine.packing import PackedConv, n_words

BLOCK = 4  # output channels per register block
U = np.uint64


def _numba_threads(threads: int) -> None:
    # numba's own work-queue threads leave torch's OpenMP runtime and its thread count alone, which its "omp"
    # layer may not. The layer is fixed when numba starts its threads: at the first portable kernel.
    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER = "workqueue"
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))


def pack(x: np.ndarray, threshold: np.ndarray, packed: np.ndarray, threads: int) -> None:
    """`binsr.engine.xnor.pack_activations` into the interior of `packed`, on `threads` threads."""
    _numba_threads(threads)
    _pack_portable(x, threshold, packed)


def conv(
    packed: np.ndarray, conv: PackedConv, residual: np.ndarray | None, next_threshold: np.ndarray | None,
    out: np.ndarray, nxt: np.ndarray | None, threads: int,
) -> None:  # fmt: skip
    """`binsr.engine.xnor.xnor_conv` into `out` (and `nxt`, the next layer's packed map, with `next_threshold`)."""
    _numba_threads(threads)
    k, words = conv.kernel_size, n_words(conv.in_channels)
    offsets = np.array(
        [(dy * packed.shape[2] + dx) * words + w for dy in range(k) for dx in range(k) for w in range(words)]
    )
    _conv_portable(
        packed,
        conv.bits.reshape(-1, conv.bits.shape[3]),
        offsets,
        1 - k // 2,
        conv.base,
        conv.alpha,
        _NO_RPRELU if conv.rprelu is None else conv.rprelu,
        _NO_MAP if residual is None else residual,
        out,
        _NO_THRESHOLD if next_threshold is None else next_threshold,
        _NO_PACKED if nxt is None else nxt,
    )


_NO_RPRELU = np.empty((0, 0), np.float32)
_NO_MAP = np.empty((0, 0, 0, 0), np.float32)
_NO_THRESHOLD = np.empty(0, np.float32)
_NO_PACKED = np.empty((0, 0, 0, 0), np.uint32)


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of a uint32 or uint64 word, as an int64 (llvm.ctpop)."""
    if x not in (types.uint32, types.uint64):
        return None

    def codegen(context, builder, sig, args):
        count = builder.call(builder.module.declare_intrinsic("llvm.ctpop", [args[0].type]), args)
        return count if x == types.uint64 else builder.zext(count, ir.IntType(64))

    # int64, not uint64: LLVM schedules signed accumulators with fewer spills.
    return types.int64(x), codegen


@njit(cache=True)
def _pack_pixel(values, at, threshold, packed, to):
    """packed[to + w] = bits (values[at + c] > threshold[c]) of word w's channels (flat arrays)."""
    channels = threshold.size
    bits = 32 if channels <= 32 else 64
    for w in range((channels + bits - 1) // bits):
        word = U(0)
        for b in range(min(bits, channels - w * bits)):
            c = w * bits + b
            word |= U(values[at + U(c)] > threshold[c]) << U(b)
        packed[to + U(w)] = word  # a uint32 map keeps the low half, which holds all 32 channels


@njit(cache=True)
def _packed_offset(n, y, x, height, width, words):
    """Flat offset of interior pixel (n, y, x) in an (N, height+2, width+2, words) packed map."""
    return ((U(n) * U(height + 2) + U(y + 1)) * U(width + 2) + U(x + 1)) * U(words)


@njit(parallel=True, cache=True)
def _pack_portable(x, threshold, packed):
    n_img, height, width, channels = x.shape
    flat_x, flat_packed = x.reshape(-1), packed.reshape(-1)
    for row in prange(n_img * height):
        n, y = row // height, row % height
        for px in range(width):
            to = _packed_offset(n, y, px, height, width, packed.shape[3])
            _pack_pixel(flat_x, U((row * width + px) * channels), threshold, flat_packed, to)


@njit(parallel=True, cache=True)
def _conv_portable(act, weights, offsets, lead, base, alpha, rprelu, residual, out, threshold, nxt):
    """The fused conv; weights (steps, O') with step = (tap, word) at flat offset offsets[step] from the window."""
    # Flat arrays and unsigned offsets: numba fixes up negative indices on every signed access.
    n_img, height, width, out_channels = out.shape
    words, padded = act.shape[3], weights.shape[1]
    flat_act, flat_weights, flat_base = act.reshape(-1), weights.reshape(-1), base.reshape(-1)
    flat_out, flat_res, flat_nxt = out.reshape(-1), residual.reshape(-1), nxt.reshape(-1)
    use_rprelu, use_residual, use_next = rprelu.size > 0, residual.size > 0, threshold.size > 0
    gamma, beta, zeta = (rprelu[0], rprelu[1], rprelu[2]) if use_rprelu else (alpha, alpha, alpha)
    for row in prange(n_img * height):
        counts = np.empty(padded, np.int32)
        stage = np.empty(out_channels, np.float32)
        n, y = row // height, row % height
        row_case = (y == 0) | ((y == height - 1) << 1)
        for x in range(width):
            col_case = (x == 0) | ((x == width - 1) << 1)
            start = U(((n * (height + 2) + y + lead) * (width + 2) + x + lead) * words)
            for o in range(0, padded, BLOCK):
                c0 = c1 = c2 = c3 = 0
                for j in range(offsets.size):
                    a = flat_act[start + U(offsets[j])]
                    iw = U(j * padded + o)
                    c0 += _popcount(a ^ flat_weights[iw])
                    c1 += _popcount(a ^ flat_weights[iw + U(1)])
                    c2 += _popcount(a ^ flat_weights[iw + U(2)])
                    c3 += _popcount(a ^ flat_weights[iw + U(3)])
                counts[o], counts[o + 1], counts[o + 2], counts[o + 3] = c0, c1, c2, c3

            # The output stage: one branch-free loop per op over the pixel's channels, which LLVM vectorizes.
            # It runs in `stage` so that `out` may be the residual itself.
            pixel = U((row * width + x) * out_channels)
            table = U((row_case * 4 + col_case) * out_channels)
            for o in range(out_channels):
                # int32 so the conversion vectorizes (AVX2 has no int64 -> float32)
                stage[o] = np.float32(np.int32(flat_base[table + U(o)] - 2 * counts[o])) * alpha[o]
            if use_rprelu:
                for o in range(out_channels):
                    v = stage[o] - gamma[o]
                    slope = beta[o]  # loaded outside the select so the loop if-converts
                    stage[o] = (v if v > 0 else slope * v) + zeta[o]
            if use_residual:
                for o in range(out_channels):
                    stage[o] = stage[o] + flat_res[pixel + U(o)]
            for o in range(out_channels):
                flat_out[pixel + U(o)] = stage[o]
            if use_next:
                to = _packed_offset(n, y, x, height, width, nxt.shape[3])
                _pack_pixel(flat_out, pixel, threshold, flat_nxt, to)
