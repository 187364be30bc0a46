"""Bit-packed XNOR + popcount engine for BinaryConv2d: packing, the conv kernel, and its fused output stage.

Activations are packed along channels: pixel (y, x) holds ceil(C/64) uint64 words, bit b of word w being
+1 iff x[64w + b] > threshold (RSign exactly, so NaN and ties give -1 = bit 0). Weights are packed the same
way per output channel and tap. For ±1 vectors of length K,  a . b = K - 2 popcount(a XOR b). With C <= 32
a word's high half would be empty, so the kernel pairs taps instead: tap 2i of the 3x3 window in the low half,
tap 2i+1 in the high half of one word (5 popcounts for 9 taps); the packed map itself stays one pixel a word.

Zero padding has no 1-bit code, so a packed map carries a one-pixel border of +1 and the kernel subtracts what
the border contributed: an out-of-image tap of output channel o adds sum_c sign(W[o, c, tap]), a constant
per output channel and border case (first/last row, first/last column). `PackedConv.base` holds k*k*C minus
that constant, so  accumulator = base[row case, column case, o] - 2 popcount  equals F.conv2d of the ±1
tensors with zero padding exactly. Padding bits beyond C are 0 in activations and weights alike: no count.

The fused stage computes, per output, float32(accumulator) * alpha -> RPReLU -> + residual in float32 in the
torch op order (no fastmath: contracting to FMA would change the rounding), and thresholds the result into
the next layer's packed map, so a binary body reads and writes one float map per unit and nothing else.

Speed (measured with `binsr.bench` on a 2-core AVX2 VM, no AVX-512): register blocks are 1 pixel x 4 output
channels, since the popcount rate, not loads, bounds the loop and larger pixel blocks only add spills; flat
unsigned indices keep numba's negative-index fix-ups out of the loop; the word count and kernel size are
compile-time constants so LLVM unrolls the taps. The inner loop is load, xor, popcnt, add per word (4.3
instructions per popcount in the 64-channel kernel), close to the ~1 popcnt/cycle this core sustains.
Where the target has AVX-512 VPOPCNTDQ the popcount is `llvm.ctpop`, which LLVM vectorizes into vpopcntq.
Elsewhere on x86-64 it is scalar `popcnt` in inline asm: LLVM's AVX2 vector popcount (vpshufb nibble
lookups) ran 2x slower than scalar popcnt here, and only opaque asm keeps the loop vectorizer off it.
Assembly check (`binsr.bench.kernel_popcounts`): here the 3x3 kernel has 36 popcntq per 4-channel block
at 64 channels (20 at 32, paired) and no vpshufb; cross-compiled for znver4 (NUMBA_CPU_NAME=znver4 and its
AVX-512 features) the 64-channel kernel has vpopcntq (LLVM vectorizes across output blocks, gathering
weights); that build cannot run on this machine, so it is untimed.
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # keeps torch's thread settings honoured

import functools
import platform
from dataclasses import dataclass, replace

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import config
from numba.extending import intrinsic

WORD_BITS = 64
BLOCK = 4  # output channels per register block
KERNEL_SIZES = (1, 3)
U = np.uint64

# The features numba compiles for: the host's, unless NUMBA_CPU_NAME/NUMBA_CPU_FEATURES pick another target.
VECTOR_POPCOUNT = "+avx512vpopcntdq" in (config.CPU_FEATURES or llvm.get_host_cpu_features().flatten())
_ASM_POPCOUNT = platform.machine() in ("x86_64", "AMD64") and not VECTOR_POPCOUNT
if _ASM_POPCOUNT:
    llvm.initialize_native_asmparser()


@intrinsic
def popcount(typingctx, x):
    """Number of set bits of a uint64 as an int64: popcnt, or llvm.ctpop where it vectorizes to vpopcntq."""
    if x != types.uint64:
        return None

    def codegen(context, builder, sig, args):
        if _ASM_POPCOUNT:
            asm = ir.InlineAsm(ir.FunctionType(ir.IntType(64), [ir.IntType(64)]), "popcntq $1, $0", "=r,r")
            return builder.call(asm, args)
        return builder.call(builder.module.declare_intrinsic("llvm.ctpop", [args[0].type]), args)

    # int64, not uint64: LLVM schedules signed accumulators with fewer spills (measured 25% faster).
    return types.int64(types.uint64), codegen


def n_words(channels: int) -> int:
    """uint64 words per pixel for `channels` packed channels."""
    return -(-channels // WORD_BITS)


def empty_packed(n: int, height: int, width: int, channels: int) -> np.ndarray:
    """An (n, height+2, width+2, words) packed map with the +1 border set and the interior unset."""
    border = np.zeros(n_words(channels) * WORD_BITS, bool)
    border[:channels] = True  # +1 on every real channel; padding bits stay 0 as in the weights
    border = np.packbits(border, bitorder="little").view("<u8").astype(U)
    packed = np.empty((n, height + 2, width + 2, n_words(channels)), U)
    packed[:, 0], packed[:, -1], packed[:, :, 0], packed[:, :, -1] = border, border, border, border
    return packed


@njit(cache=True)
def _pack_pixel(values, at, threshold, packed, to):
    """packed[to + w] = bits (values[at + c] > threshold[c]) of channels c = 64w .. 64w+63 (flat arrays)."""
    channels = threshold.size
    for w in range((channels + WORD_BITS - 1) // WORD_BITS):
        word = U(0)
        for b in range(min(WORD_BITS, channels - w * WORD_BITS)):
            c = w * WORD_BITS + b
            word |= U(values[at + U(c)] > threshold[c]) << U(b)
        packed[to + U(w)] = word


@njit(cache=True)
def _packed_offset(n, y, x, height, width, words):
    """Flat offset of interior pixel (n, y, x) in an (N, height+2, width+2, words) packed map."""
    return ((U(n) * U(height + 2) + U(y + 1)) * U(width + 2) + U(x + 1)) * U(words)


@njit(parallel=True, cache=True)
def _pack_interior(x, threshold, packed):
    n_img, height, width, channels = x.shape
    flat_x, flat_packed = x.reshape(-1), packed.reshape(-1)
    for row in prange(n_img * height):
        n, y = row // height, row % height
        for px in range(width):
            to = _packed_offset(n, y, px, height, width, packed.shape[3])
            _pack_pixel(flat_x, U((row * width + px) * channels), threshold, flat_packed, to)


def pack_activations(x: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """RSign and pack an (N, H, W, C) float32 map (bit = x > threshold[c]) into (N, H+2, W+2, words) uint64."""
    threshold = np.ascontiguousarray(threshold, np.float32)
    if x.ndim != 4 or x.shape[3] != threshold.size or x.dtype != np.float32:
        raise ValueError(f"expected an (N, H, W, {threshold.size}) float32 array, got {x.shape} {x.dtype}")
    packed = empty_packed(x.shape[0], x.shape[1], x.shape[2], threshold.size)
    _pack_interior(np.ascontiguousarray(x), threshold, packed)
    return packed


@dataclass(frozen=True)
class PackedConv:
    """One BinaryConv2d in kernel form: sign(W) bits, the border table, alpha and RPReLU's (gamma, beta, zeta).

    bits: (ceil(O/4), k, k*words, 4) uint64: word j of kernel row dy for output 4*block + q (O padded by 0s).
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

    @property
    def paired(self) -> bool:
        """C <= 32 and several taps: a word's high half is empty, so the kernel puts two taps in one word."""
        return self.in_channels <= WORD_BITS // 2 and self.kernel_size > 1

    @functools.cached_property
    def kernel_words(self) -> np.ndarray:
        """What the kernel reads, (blocks, words per output, 4): `bits` in tap order, or paired taps."""
        taps = self.bits.reshape(self.bits.shape[0], -1, BLOCK)
        if not self.paired:
            return taps
        if taps.shape[1] % 2:
            taps = np.concatenate([taps, np.zeros_like(taps[:, :1])], axis=1)
        return np.ascontiguousarray(taps[:, 0::2] | (taps[:, 1::2] << U(32)))


def pack_conv(weight: np.ndarray, alpha: np.ndarray | None = None, rprelu: np.ndarray | None = None) -> PackedConv:
    """Pack float weights (O, C, k, k) by sign (+1 iff w > 0); alpha defaults to 1 (raw accumulators)."""
    if weight.ndim != 4 or weight.shape[2] != weight.shape[3] or weight.shape[2] not in KERNEL_SIZES:
        raise ValueError(f"expected (O, C, k, k) weights with k in {KERNEL_SIZES}, got shape {weight.shape}")
    out_channels, channels, k, _ = weight.shape
    words = n_words(channels)
    positive = np.zeros((-(-out_channels // BLOCK) * BLOCK, k, k, words * WORD_BITS), bool)
    positive[:out_channels, :, :, :channels] = weight.transpose(0, 2, 3, 1) > 0
    bits = np.packbits(positive, axis=-1, bitorder="little").view("<u8").astype(U)
    bits = bits.reshape(-1, BLOCK, k, k * words).transpose(0, 2, 3, 1)

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
    return PackedConv(np.ascontiguousarray(bits), base, alpha, rprelu, channels, k)


@functools.cache
def _conv_kernel(words: int, k: int, paired: bool):
    """The fused kernel for `words` words per pixel and kernel size k; constants let LLVM unroll the taps.

    paired (C <= 32, one word per pixel whose high half is empty): each kernel word holds two taps, tap 2i in
    the low and tap 2i+1 in the high half, so 9 taps take 5 popcounts instead of 9.
    """
    row_words = k * words  # a kernel row's k pixels lie contiguously in a packed row
    lead = 1 - k // 2  # the window's first row/column relative to the pixel, in the bordered map
    rows, row_len = (1, (k * k + 1) // 2) if paired else (k, row_words)  # kernel words: rows x row_len

    @njit(parallel=True, cache=True)
    def kernel(act, bits, base, alpha, rprelu, residual, out, threshold, nxt):
        # Flat arrays and unsigned offsets: numba fixes up negative indices on every signed access.
        n_img, height, width, out_channels = out.shape
        flat_act, flat_bits, flat_base = act.reshape(-1), bits.reshape(-1), base.reshape(-1)
        flat_out, flat_res, flat_nxt = out.reshape(-1), residual.reshape(-1), nxt.reshape(-1)
        map_row = U(act.shape[2] * words)
        use_rprelu, use_residual, use_next = rprelu.size > 0, residual.size > 0, threshold.size > 0
        gamma, beta, zeta = (rprelu[0], rprelu[1], rprelu[2]) if use_rprelu else (alpha, alpha, alpha)
        for row in prange(n_img * height):
            counts = np.empty(bits.shape[0] * BLOCK, np.int32)
            stage = np.empty(out_channels, np.float32)
            n, y = row // height, row % height
            row_case = (y == 0) | ((y == height - 1) << 1)
            for x in range(width):
                col_case = (x == 0) | ((x == width - 1) << 1)
                start = (U(n) * U(height + 2) + U(y + lead)) * map_row + U(x + lead) * U(words)
                for block in range(bits.shape[0]):
                    c0 = c1 = c2 = c3 = 0
                    iw = U(block * rows * row_len * BLOCK)
                    for dy in range(rows):
                        for j in range(row_len):
                            if paired:  # taps t and t + 1 (row-major over the window) share word j
                                t = 2 * j
                                a = flat_act[start + U(t // k) * map_row + U(t % k)]
                                if t + 1 < k * k:
                                    a |= flat_act[start + U((t + 1) // k) * map_row + U((t + 1) % k)] << U(32)
                            else:
                                a = flat_act[start + U(dy) * map_row + U(j)]
                            c0 += popcount(a ^ flat_bits[iw])
                            c1 += popcount(a ^ flat_bits[iw + U(1)])
                            c2 += popcount(a ^ flat_bits[iw + U(2)])
                            c3 += popcount(a ^ flat_bits[iw + U(3)])
                            iw += U(BLOCK)
                    counts[block * BLOCK], counts[block * BLOCK + 1] = c0, c1
                    counts[block * BLOCK + 2], counts[block * BLOCK + 3] = c2, c3

                # The output stage: one branch-free loop per op over the pixel's channels, which LLVM
                # vectorizes (branching per output on the data mispredicts and costs more than the conv).
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

    return kernel


_NO_RPRELU = np.empty((0, 0), np.float32)
_NO_MAP = np.empty((0, 0, 0, 0), np.float32)
_NO_THRESHOLD = np.empty(0, np.float32)
_NO_PACKED = np.empty((0, 0, 0, 0), U)


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
    words = n_words(conv.in_channels)
    if packed.ndim != 4 or packed.shape[3] != words or packed.dtype != U or not packed.flags.c_contiguous:
        raise ValueError(f"expected a C-contiguous (N, H+2, W+2, {words}) uint64 packed map, got {packed.shape}")
    shape = (packed.shape[0], packed.shape[1] - 2, packed.shape[2] - 2, conv.out_channels)
    for name, array in (("residual", residual), ("out", out)):
        if array is not None and (array.shape != shape or array.dtype != np.float32 or not array.flags.c_contiguous):
            raise ValueError(f"{name} is {array.shape} {array.dtype}; expected C-contiguous {shape} float32")
    out = np.empty(shape, np.float32) if out is None else out
    nxt = None
    if next_threshold is not None:
        next_threshold = np.ascontiguousarray(next_threshold, np.float32)
        if next_threshold.shape != (conv.out_channels,):
            raise ValueError(f"next_threshold has shape {next_threshold.shape}; expected ({conv.out_channels},)")
        nxt = empty_packed(shape[0], shape[1], shape[2], conv.out_channels)
    _conv_kernel(words, conv.kernel_size, conv.paired)(
        packed,
        conv.kernel_words,
        conv.base,
        conv.alpha,
        _NO_RPRELU if conv.rprelu is None else conv.rprelu,
        _NO_MAP if residual is None else residual,
        out,
        _NO_THRESHOLD if next_threshold is None else next_threshold,
        _NO_PACKED if nxt is None else nxt,
    )
    return out, nxt


def xnor_accumulators(packed: np.ndarray, conv: PackedConv) -> np.ndarray:
    """The integer accumulators conv(x_b, sign W) with zero padding, (N, H, W, O) int32."""
    raw = replace(conv, alpha=np.ones(conv.out_channels, np.float32), rprelu=None)
    return xnor_conv(packed, raw)[0].astype(np.int32)
