/* Native kernels of binsr.xnor, compiled on first use by binsr/native.py, once per instruction set:
 *
 *   -DBINSR_AVX512  AVX-512 F/BW/DQ/VL + VPOPCNTDQ: xor + vpopcnt + add on 8 (uint64) or 16 (uint32) outputs a zmm
 *   -DBINSR_AVX2    AVX2: the popcount is two 16-entry nibble lookups (vpshufb) summed in bytes, 4 or 8 outputs a ymm
 *
 * Layouts (binsr/packing.py describes them): a packed map is (N, H+2, W+2, words) with a +1 border, its words uint32
 * for C <= 32 channels and uint64 above; the weights are (k*k*words, opad): for each tap and word, that word of
 * every output channel side by side, so one vector load holds a group of outputs and one broadcast activation
 * word meets all of them. The register tile is TILE_VECTORS output vectors x TILE_PIXELS pixels of one row; its
 * counts stay in registers through the output stage.
 *
 * The output stage works on float vectors of 16 (8) channels with one IEEE operation per torch op, in torch's
 * order; it must be compiled with -ffp-contract=off, or the compiler could fuse a multiply and an add into an FMA,
 * which rounds once instead of twice. Rows are shared among OpenMP threads: gcc's libgomp is the runtime torch's
 * wheels bundle too, so the kernel runs on torch's own worker threads.
 */
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* What the output stage does with its results: stores them, streams them past the caches, or stores them and packs
 * them for the next layer */
enum { STORE, STREAM, PACK };

#define INLINE static inline __attribute__((always_inline))
#define PARALLEL_WORK (1 << 18) /* below this many output channels x taps x pixels (or packed channels), one thread */
#define STREAM_BYTES (2 << 20) /* outputs from this size (larger than most L2 caches) are written non-temporally */
#define PREFETCH (16 << 10) /* the packing asks for the input this many bytes ahead: 1.3x faster from memory */

#if defined(BINSR_AVX512)
typedef __m512i vec;
#define VEC_BYTES 64
#define CHUNK INT64_MAX /* steps counted before the counters are widened: never; 32 bits hold 2^27 steps */
#define TILE_VECTORS 2 /* the register tile: TILE_VECTORS output vectors x TILE_PIXELS pixels */
#define TILE_PIXELS 8

INLINE vec vzero(void) { return _mm512_setzero_si512(); }
INLINE vec vload(const char *p) { return _mm512_loadu_si512(p); }
INLINE vec vbroadcast(const char *p, int wide) {
    return wide ? _mm512_set1_epi64(*(const int64_t *)p) : _mm512_set1_epi32(*(const int32_t *)p);
}
INLINE vec vcount(vec acc, vec a, vec w, int wide) {
    vec x = _mm512_xor_si512(a, w);
    return wide ? _mm512_add_epi64(acc, _mm512_popcnt_epi64(x)) : _mm512_add_epi32(acc, _mm512_popcnt_epi32(x));
}
/* The int32 counts of one group of FLANES output channels: one uint32 vector, or the low halves of the 64-bit
 * lanes of two uint64 vectors (`vectors` = 2) or of one (the last 8 channels, the upper lanes 0). */
typedef __m512i ivec;
INLINE ivec group_counts(const vec *acc, int vectors, int wide) {
    if (!wide) return acc[0];
    if (vectors == 1) return _mm512_zextsi256_si512(_mm512_cvtepi64_epi32(acc[0]));
    const __m512i low_halves = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    return _mm512_permutex2var_epi32(acc[0], low_halves, acc[1]);
}
INLINE ivec iadd(ivec a, ivec b) { return _mm512_add_epi32(a, b); }
/* float vectors for the output stage: n = channels left; lanes past n load as 0 and are not stored */
typedef __m512 fvec;
#define FLANES 16
INLINE __mmask16 fmask(int64_t n) { return n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }
INLINE fvec fload(const float *p, int64_t n) { return _mm512_maskz_loadu_ps(fmask(n), p); }
INLINE void fstore(float *p, fvec v, int64_t n) { _mm512_mask_storeu_ps(p, fmask(n), v); }
INLINE void fstream(float *p, fvec v) { _mm512_stream_ps(p, v); } /* p 64-byte aligned */
INLINE fvec fadd(fvec a, fvec b) { return _mm512_add_ps(a, b); }
INLINE fvec fsub(fvec a, fvec b) { return _mm512_sub_ps(a, b); }
INLINE fvec fmul(fvec a, fvec b) { return _mm512_mul_ps(a, b); }
/* float(base - 2 counts) */
INLINE fvec faccumulator(const int32_t *base, ivec counts, int64_t n) {
    __m512i b = _mm512_maskz_loadu_epi32(fmask(n), base);
    return _mm512_cvtepi32_ps(_mm512_sub_epi32(b, _mm512_slli_epi32(counts, 1)));
}
/* PReLU: v > 0 ? v : slope * v */
INLINE fvec fprelu(fvec v, fvec slope) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_mul_ps(slope, v), v);
}
/* bit c = v[c] > t[c] (0 for NaN) */
INLINE uint32_t fgreater(fvec v, fvec t) { return _mm512_cmp_ps_mask(v, t, _CMP_GT_OQ); }

#elif defined(BINSR_AVX2)
typedef __m256i vec;
#define VEC_BYTES 32
#define CHUNK 31 /* steps counted before the counters are widened: a byte holds 31 popcounts of a byte */
#define TILE_VECTORS 2
#define TILE_PIXELS 3

INLINE vec vzero(void) { return _mm256_setzero_si256(); }
INLINE vec vload(const char *p) { return _mm256_loadu_si256((const __m256i *)p); }
INLINE vec vbroadcast(const char *p, int wide) {
    return wide ? _mm256_set1_epi64x(*(const int64_t *)p) : _mm256_set1_epi32(*(const int32_t *)p);
}
INLINE vec vcount(vec acc, vec a, vec w, int wide) {
    (void)wide; /* bytes are counted alike; group_counts sums them into 32-bit lanes */
    const vec table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                       0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const vec low = _mm256_set1_epi8(0x0f);
    vec x = _mm256_xor_si256(a, w);
    vec lo = _mm256_shuffle_epi8(table, _mm256_and_si256(x, low));
    vec hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(x, 4), low));
    return _mm256_add_epi8(acc, _mm256_add_epi8(lo, hi));
}
typedef __m256i ivec;
INLINE ivec group_counts(const vec *acc, int vectors, int wide) {
    if (!wide) /* bytes -> pairs (16 bit) -> 32-bit lanes */
        return _mm256_madd_epi16(_mm256_maddubs_epi16(acc[0], _mm256_set1_epi8(1)), _mm256_set1_epi16(1));
    /* per 64-bit lane the sum of its 8 bytes, then the low halves of the four lanes, of one vector or two */
    const vec low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
    __m128i lo = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_sad_epu8(acc[0], vzero()), low_halves));
    __m128i hi = vectors == 1 ? _mm_setzero_si128()
                              : _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_sad_epu8(acc[1], vzero()),
                                                                                     low_halves));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}
INLINE ivec iadd(ivec a, ivec b) { return _mm256_add_epi32(a, b); }
typedef __m256 fvec;
#define FLANES 8
INLINE __m256i fmask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INLINE fvec fload(const float *p, int64_t n) { return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, fmask(n)); }
INLINE void fstore(float *p, fvec v, int64_t n) {
    if (n >= 8) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, fmask(n), v);
}
INLINE void fstream(float *p, fvec v) { _mm256_stream_ps(p, v); } /* p 32-byte aligned */
INLINE fvec fadd(fvec a, fvec b) { return _mm256_add_ps(a, b); }
INLINE fvec fsub(fvec a, fvec b) { return _mm256_sub_ps(a, b); }
INLINE fvec fmul(fvec a, fvec b) { return _mm256_mul_ps(a, b); }
INLINE fvec faccumulator(const int32_t *base, ivec counts, int64_t n) {
    __m256i b = n >= 8 ? _mm256_loadu_si256((const __m256i *)base) : _mm256_maskload_epi32(base, fmask(n));
    return _mm256_cvtepi32_ps(_mm256_sub_epi32(b, _mm256_slli_epi32(counts, 1)));
}
INLINE fvec fprelu(fvec v, fvec slope) {
    return _mm256_blendv_ps(_mm256_mul_ps(slope, v), v, _mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_GT_OQ));
}
INLINE uint32_t fgreater(fvec v, fvec t) { return (uint32_t)_mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_GT_OQ)); }

#else
#error "compile with -DBINSR_AVX512 or -DBINSR_AVX2"
#endif

/* After the bits of channels c .. c+FLANES of a pixel: store the packed word they complete (or end) at dst, in words
 * of 32 bits for <= 32 channels, else 64; returns the bits still to come in the current word. */
INLINE uint64_t put_word(char *dst, int64_t c, int64_t channels, uint64_t bits) {
    const int last = c + FLANES >= channels;
    if (channels <= 32) {
        if (last) *(uint32_t *)dst = (uint32_t)bits;
        return bits;
    }
    if (!last && (c + FLANES) % 64 != 0) return bits;
    ((uint64_t *)dst)[c / 64] = bits;
    return 0;
}

/* Packs one pixel: bit c of its words = v[c] > threshold[c]. */
INLINE void pack_pixel(const float *v, const float *threshold, int64_t channels, char *dst) {
    uint64_t bits = 0;
    for (int64_t c = 0; c < channels; c += FLANES) {
        bits |= (uint64_t)fgreater(fload(v + c, channels - c), fload(threshold + c, channels - c)) << (c % 64);
        bits = put_word(dst, c, channels, bits);
    }
}

static int64_t words_of(int64_t channels) { return channels <= 32 ? 1 : (channels + 63) / 64; }
static int64_t word_bytes(int64_t channels) { return channels <= 32 ? 4 : 8; }

/* x (N, H, W, C) float32 -> the interior of packed (N, H+2, W+2, words); the border is set by the caller. */
void binsr_pack(const float *x, const float *threshold, char *packed, int64_t n_img, int64_t height, int64_t width,
                int64_t channels, int threads) {
    const int64_t pixel_bytes = words_of(channels) * word_bytes(channels);
    const int64_t work = n_img * height * width * channels;
    const int parallel = threads > 1 && n_img * height > 1 && work >= PARALLEL_WORK;
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t row = 0; row < n_img * height; row++) {
        const int64_t n = row / height, y = row % height;
        char *to = packed + ((n * (height + 2) + y + 1) * (width + 2) + 1) * pixel_bytes;
        for (int64_t px = 0; px < width; px++) {
            const float *v = x + (row * width + px) * channels;
            for (int64_t line = 0; line < channels * 4; line += 64)
                __builtin_prefetch((const char *)v + PREFETCH + line);
            pack_pixel(v, threshold, channels, to + px * pixel_bytes);
        }
    }
}

/* x (N, C, H, W) float32, as torch's maps lie -> the interior of packed (N, H+2, W+2, words), the same bits as
 * binsr_pack of its NHWC copy, without the copy: a row's words are built channel by channel, each channel's row read
 * in order (the compiler vectorizes the compare-shift-or along the row). The border is set by the caller. */
void binsr_pack_nchw(const float *x, const float *threshold, char *packed, int64_t n_img, int64_t channels,
                     int64_t height, int64_t width, int threads) {
    const int64_t words = words_of(channels), wide = channels > 32;
    const int64_t work = n_img * height * width * channels;
    const int parallel = threads > 1 && n_img * height > 1 && work >= PARALLEL_WORK;
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t row = 0; row < n_img * height; row++) {
        const int64_t n = row / height, y = row % height;
        char *to = packed + ((n * (height + 2) + y + 1) * (width + 2) + 1) * words * word_bytes(channels);
        const float *plane_row = x + (n * channels * height + y) * width;
        if (!wide) {
            uint32_t *word = (uint32_t *)to;
            for (int64_t px = 0; px < width; px++) word[px] = 0;
            for (int64_t c = 0; c < channels; c++) {
                const float *v = plane_row + c * height * width, t = threshold[c];
                for (int64_t px = 0; px < width; px++) word[px] |= (uint32_t)(v[px] > t) << c;
            }
        } else {
            uint64_t *word = (uint64_t *)to;
            for (int64_t i = 0; i < width * words; i++) word[i] = 0;
            for (int64_t c = 0; c < channels; c++) {
                const float *v = plane_row + c * height * width, t = threshold[c];
                uint64_t *w = word + c / 64;
                for (int64_t px = 0; px < width; px++) w[px * words] |= (uint64_t)(v[px] > t) << (c % 64);
            }
        }
    }
}

/* x (N, H, W, C) float32 -> y (N, C, H, W): the binary units' NHWC output as torch's maps lie, a row at a time, in
 * blocks of TRANSPOSE_PIXELS pixels: a block's input (2 KiB at 32 channels) stays in L1 while each channel's row
 * of the block is written as one cache line. Pixel by pixel, a pixel's channels went to C lines at once, which
 * for a 320-pixel map (planes 400 KiB apart, a multiple of 4 KiB) all fall into one cache set: 11 ms against 2 ms
 * for 32x320x320 here. */
#define TRANSPOSE_PIXELS 16
void binsr_to_nchw(const float *x, float *y, int64_t n_img, int64_t height, int64_t width, int64_t channels,
                   int threads) {
    const int parallel = threads > 1 && n_img * height > 1 && n_img * height * width * channels >= PARALLEL_WORK;
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t row = 0; row < n_img * height; row++) {
        const int64_t n = row / height, y_ = row % height;
        const float *from = x + row * width * channels;
        float *to = y + (n * channels * height + y_) * width;
        for (int64_t px0 = 0; px0 < width; px0 += TRANSPOSE_PIXELS) {
            const int64_t block = width - px0 < TRANSPOSE_PIXELS ? width - px0 : TRANSPOSE_PIXELS;
            for (int64_t c = 0; c < channels; c++) {
                float *plane_row = to + c * height * width + px0;
                const float *column = from + px0 * channels + c;
                for (int64_t p = 0; p < block; p++) plane_row[p] = column[p * channels];
            }
        }
    }
}

/* binsr_conv's one argument, mirrored field for field by binsr.native.ConvCall: a struct, not 17 positional
 * parameters, so that Python names every field and a library built from another layout is refused at load
 * (binsr_abi) instead of reading its arguments from the wrong places. Change BINSR_ABI with any change here. */
#define BINSR_ABI 1
typedef struct {
    const char *act;             /* packed input map (N, H+2, W+2, words) */
    const char *weights;         /* (k*k*words, opad) */
    const int32_t *base;         /* (4, 4, O) */
    const float *alpha;          /* (O) */
    const float *rprelu;         /* (3, O), or NULL */
    const float *residual;       /* (N, H, W, O), or NULL; may be `out` itself */
    float *out;                  /* (N, H, W, O) */
    const float *next_threshold; /* (O), or NULL: no packed output */
    char *next;                  /* (N, H+2, W+2, words(O)), or NULL */
    int64_t n_img, height, width, channels, out_channels, opad, k;
    int32_t threads;
} ConvCall;

/* The interface version and the struct's size, which binsr.native compares with its own before any call */
int64_t binsr_abi(void) { return BINSR_ABI; }
int64_t binsr_conv_call_size(void) { return sizeof(ConvCall); }

/* Writes the byte offset of each of ConvCall's fields, in order, for the test that binsr.native.ConvCall lies
 * the same way (room for 32); returns their number. */
int64_t binsr_conv_call_offsets(int64_t *offsets) {
    const int64_t fields[] = {
        offsetof(ConvCall, act), offsetof(ConvCall, weights), offsetof(ConvCall, base), offsetof(ConvCall, alpha),
        offsetof(ConvCall, rprelu), offsetof(ConvCall, residual), offsetof(ConvCall, out),
        offsetof(ConvCall, next_threshold), offsetof(ConvCall, next), offsetof(ConvCall, n_img),
        offsetof(ConvCall, height), offsetof(ConvCall, width), offsetof(ConvCall, channels),
        offsetof(ConvCall, out_channels), offsetof(ConvCall, opad), offsetof(ConvCall, k), offsetof(ConvCall, threads)};
    const int64_t n = sizeof fields / sizeof fields[0];
    for (int64_t i = 0; i < n; i++) offsets[i] = fields[i];
    return n;
}

/* The geometry and operands of one call of binsr_conv, with what it derives from them (offsets, steps, output),
 * as the rows read them. */
typedef struct {
    const char *act, *weights;   /* packed input map; weights (k*k*words, opad) */
    const int64_t *offsets;      /* byte offset of step j = (tap, word) from the window's first word */
    int64_t height, width, channels, out_channels, opad, steps, k;
    const int32_t *base;         /* (4, 4, O) int32: k*k*C minus the border's contribution, by row and column case */
    const float *alpha;          /* (O) */
    const float *rprelu;         /* (3, O) gamma, beta, zeta, or NULL */
    const float *residual;       /* (N, H, W, O), or NULL; may be `out` itself */
    float *out;                  /* (N, H, W, O) */
    const float *next_threshold; /* (O), or NULL: no packed output */
    char *next;                  /* (N, H+2, W+2, words(O)) packed map for the next layer */
    int output;                  /* STORE, STREAM or PACK (see binsr_conv) */
} Conv;

/* acc[p][v] = sum over steps j0 <= j < j1 of popcount(a_j ^ w_j) for VB output vectors of P pixels; a0 and w0
 * point at the first pixel's window and the first output vector's weights. */
INLINE void count(const Conv *c, const char *a0, const char *w0, int64_t j0, int64_t j1,
                  vec acc[TILE_PIXELS][TILE_VECTORS], const int P, const int VB, const int wide) {
    const int64_t bytes = wide ? 8 : 4, pixel_bytes = words_of(c->channels) * bytes;
    vec wv[TILE_VECTORS];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < VB; v++) acc[p][v] = vzero();
    for (int64_t j = j0; j < j1; j++) {
        const char *a = a0 + c->offsets[j], *w = w0 + j * c->opad * bytes;
#pragma GCC unroll 4
        for (int v = 0; v < VB; v++) wv[v] = vload(w + v * VEC_BYTES);
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            const vec av = vbroadcast(a + p * pixel_bytes, wide);
#pragma GCC unroll 4
            for (int v = 0; v < VB; v++) acc[p][v] = vcount(acc[p][v], av, wv[v], wide);
        }
    }
}

/* alpha, RPReLU and the residual in torch's op order on FLANES channels o .. o+n of one pixel, from their counts
 * and the base row of the pixel's border case; stores them at out + o and returns their bits of the next layer's
 * threshold-and-pack. `rprelu`, `residual` and `output` are literals (see ROWS and tile), so that no branch tests
 * them. Lanes past the last channel hold 0, which packs as 0 (0 > 0 is false). */
INLINE uint32_t output_stage(const Conv *c, ivec counts, const int32_t *base, int64_t o, int64_t n, float *out,
                             const float *residual_at, const int rprelu, const int residual, const int output) {
    const int64_t channels = c->out_channels;
    fvec v = fmul(faccumulator(base + o, counts, n), fload(c->alpha + o, n));
    if (rprelu) {
        const float *gamma = c->rprelu + o, *beta = gamma + channels, *zeta = beta + channels;
        v = fadd(fprelu(fsub(v, fload(gamma, n)), fload(beta, n)), fload(zeta, n));
    }
    if (residual) v = fadd(v, fload(residual_at + o, n));
    if (output == STREAM)
        fstream(out + o, v);
    else
        fstore(out + o, v, n);
    return output == PACK ? fgreater(v, fload(c->next_threshold + o, n)) : 0;
}

/* The output stage of G groups of channels from o0 of one pixel (out, residual_at: its first channel); returns
 * their bits of the next map. */
INLINE uint64_t stage_pixel(const Conv *c, const ivec *totals, const int G, const int32_t *base, int64_t o0,
                            float *out, const float *residual_at, const int rprelu, const int residual,
                            const int output) {
    uint64_t next = 0;
    for (int g = 0; g < G; g++) {
        const int64_t o = o0 + g * FLANES, left = c->out_channels - o, n = left < FLANES ? left : FLANES;
        const uint64_t mask = output_stage(c, totals[g], base, o, n, out, residual_at, rprelu, residual, output);
        next |= mask << (o % 64);
    }
    return next;
}

/* Which base row a row (column) i of n uses: 0 inside, 1 first, 2 last, 3 both (a map one pixel high or wide) */
INLINE int64_t border_case(int64_t i, int64_t n) { return (i == 0) | ((i == n - 1) << 1); }

/* The output stage of P pixels x G groups from channel o0 of one row from column x0, from their int32 counts; the
 * next layer's bits are or-ed into bits[p * words_of(O) ..], in one 64-bit word as a tile's channels lie in one. */
INLINE void stage_tile(const Conv *c, ivec total[TILE_PIXELS][TILE_VECTORS], int64_t o0, int64_t row, int64_t x0,
                       uint64_t *bits, const int P, const int G, const int rprelu, const int residual, const int output) {
    const int64_t y = row % c->height, channels = c->out_channels, next_words = words_of(channels);
    const int32_t *base_row = c->base + border_case(y, c->height) * 4 * channels;
    const int64_t first = (row * c->width + x0) * channels;
    float *out = c->out + first;
    const float *residual_at = residual ? c->residual + first : 0;
    const int edge = x0 == 0 || x0 + P >= c->width; /* only the first and last columns have base rows of their own */
#pragma GCC unroll 8
    for (int p = 0; p < P; p++) {
        const int64_t x = x0 + p;
        const int32_t *base = edge ? base_row + border_case(x, c->width) * channels : base_row;
        const uint64_t next = stage_pixel(c, total[p], G, base, o0, out + p * channels, residual_at + p * channels,
                                          rprelu, residual, output);
        if (output == PACK) bits[p * next_words + o0 / 64] |= next;
    }
}

/* The VB output vectors from channel o0 (w0: their weights) of P pixels of one row from column x0 (a0: the first
 * one's window): their counts, kept in registers, and the output stage of those channels. The next layer's bits
 * are or-ed into bits[p * words_of(O) ..]. */
INLINE void tile(const Conv *c, const char *a0, const char *w0, int64_t o0, int64_t row, int64_t x0,
                 uint64_t *bits, const int P, const int VB, const int wide, const int rprelu, const int residual) {
    const int group_vectors = wide && VB > 1 ? 2 : 1; /* a uint64 vector holds half a group of FLANES channels */
    const int G = VB / group_vectors;
    ivec total[TILE_PIXELS][TILE_VECTORS];
    vec acc[TILE_PIXELS][TILE_VECTORS];
    count(c, a0, w0, 0, c->steps < CHUNK ? c->steps : CHUNK, acc, P, VB, wide);
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
        for (int g = 0; g < G; g++) total[p][g] = group_counts(acc[p] + g * group_vectors, group_vectors, wide);
    for (int64_t j0 = CHUNK; j0 < c->steps; j0 += CHUNK) { /* only where the counters are narrow (avx2) */
        count(c, a0, w0, j0, c->steps - j0 < CHUNK ? c->steps : j0 + CHUNK, acc, P, VB, wide);
        for (int p = 0; p < P; p++)
            for (int g = 0; g < G; g++)
                total[p][g] = iadd(total[p][g], group_counts(acc[p] + g * group_vectors, group_vectors, wide));
    }
    switch (c->output) { /* a literal in each stage, so that no branch in it tests the mode */
    case STREAM: stage_tile(c, total, o0, row, x0, bits, P, G, rprelu, residual, STREAM); break;
    case PACK: stage_tile(c, total, o0, row, x0, bits, P, G, rprelu, residual, PACK); break;
    default: stage_tile(c, total, o0, row, x0, bits, P, G, rprelu, residual, STORE);
    }
}

/* One output row (image n, row y, as row = n * H + y), TILE_PIXELS pixels at a time: every output vector's
 * counts and output stage, then the pixels' words of the next layer's packed map. */
INLINE void conv_row(const Conv *conv, int64_t row, const int wide, const int rprelu, const int residual) {
    /* A copy the stores into bits[] cannot change (uint64_t may alias the int64_t fields of *conv): its fields
     * then stay in registers. */
    const Conv copy = *conv, *c = &copy;
    const int64_t bytes = wide ? 8 : 4, pixel_bytes = words_of(c->channels) * bytes;
    const int64_t lanes = VEC_BYTES / bytes, vectors = (c->out_channels + lanes - 1) / lanes;
    const int64_t n = row / c->height, y = row % c->height, lead = 1 - c->k / 2, width = c->width;
    const int64_t map_row = (width + 2) * pixel_bytes, next_words = words_of(c->out_channels);
    const int64_t next_bytes = word_bytes(c->out_channels);
    const char *window = c->act + (n * (c->height + 2) + y + lead) * map_row + lead * pixel_bytes;
    const int64_t next_pixel = next_words * next_bytes;
    char *next_row = c->next ? c->next + ((n * (c->height + 2) + y + 1) * (width + 2) + 1) * next_pixel : 0;
    uint64_t bits[TILE_PIXELS * next_words];
    for (int64_t x0 = 0; x0 < width; x0 += TILE_PIXELS) {
        const int64_t pixels = width - x0 < TILE_PIXELS ? width - x0 : TILE_PIXELS;
        const char *a0 = window + x0 * pixel_bytes;
        for (int64_t i = 0; i < pixels * next_words; i++) bits[i] = 0;
        for (int64_t v = 0; v < vectors;) {
            const char *w0 = c->weights + v * VEC_BYTES;
            const int64_t o0 = v * lanes;
            const int single = vectors - v < TILE_VECTORS;
            if (pixels == TILE_PIXELS && !single)
                tile(c, a0, w0, o0, row, x0, bits, TILE_PIXELS, TILE_VECTORS, wide, rprelu, residual);
            else if (pixels == TILE_PIXELS)
                tile(c, a0, w0, o0, row, x0, bits, TILE_PIXELS, 1, wide, rprelu, residual);
            else
                for (int64_t p = 0; p < pixels; p++) {
                    const char *a = a0 + p * pixel_bytes;
                    uint64_t *b = bits + p * next_words;
                    if (!single)
                        tile(c, a, w0, o0, row, x0 + p, b, 1, TILE_VECTORS, wide, rprelu, residual);
                    else
                        tile(c, a, w0, o0, row, x0 + p, b, 1, 1, wide, rprelu, residual);
                }
            v += single ? 1 : TILE_VECTORS;
        }
        if (next_row)
            for (int64_t p = 0; p < pixels; p++) {
                char *to = next_row + (x0 + p) * next_pixel;
                if (next_bytes == 4)
                    *(uint32_t *)to = (uint32_t)bits[p];
                else
                    for (int64_t w = 0; w < next_words; w++) ((uint64_t *)to)[w] = bits[p * next_words + w];
            }
    }
}

/* conv_row with the word size and the stage's options as constants, one function for each combination (OpenMP
 * outlines its loop body before inlining, so constants must be fixed here, not at the loop). */
typedef void (*RowFunction)(const Conv *, int64_t);
#define ROW(WIDE, RPRELU, RESIDUAL) \
    static void row_##WIDE##RPRELU##RESIDUAL(const Conv *c, int64_t row) { conv_row(c, row, WIDE, RPRELU, RESIDUAL); }
ROW(0, 0, 0) ROW(0, 0, 1) ROW(0, 1, 0) ROW(0, 1, 1) ROW(1, 0, 0) ROW(1, 0, 1) ROW(1, 1, 0) ROW(1, 1, 1)
static const RowFunction ROWS[8] = {row_000, row_001, row_010, row_011, row_100, row_101, row_110, row_111};

/* The fused binary conv over N images (see binsr.xnor.xnor_conv); rows are shared among `threads` threads. */
void binsr_conv(const ConvCall *call) {
    const int64_t n_img = call->n_img, height = call->height, width = call->width, channels = call->channels;
    const int64_t out_channels = call->out_channels, k = call->k;
    const int64_t bytes = word_bytes(channels), words = words_of(channels), map_row = (width + 2) * words * bytes;
    int64_t offsets[k * k * words];
    for (int64_t t = 0; t < k * k; t++)
        for (int64_t w = 0; w < words; w++)
            offsets[t * words + w] = (t / k) * map_row + (t % k) * words * bytes + w * bytes;
    /* A large output that this call does not read again (no residual, no packed copy) bypasses the caches: the
     * stores then skip reading each line before writing it, and the output would not fit in cache anyway. They
     * must fill whole 64-byte lines back to back, or each part of a line costs a trip to memory (the avx2 conv
     * 64->64 ran 1.3x slower): a group of FLANES channels fills one with avx512, and with avx2 a tile of uint32
     * words does (two groups), a tile of uint64 words only half. */
    const int64_t tile_floats = FLANES * 4 == 64 ? FLANES : TILE_VECTORS * VEC_BYTES / bytes;
    const int stream = !call->residual && !call->next && n_img * height * width * out_channels * 4 >= STREAM_BYTES &&
                       tile_floats * 4 % 64 == 0 && out_channels % tile_floats == 0 &&
                       (uintptr_t)call->out % VEC_BYTES == 0;
    const Conv c = {call->act, call->weights, offsets, height, width, channels, out_channels, call->opad,
                    k * k * words, k, call->base, call->alpha, call->rprelu, call->residual, call->out,
                    call->next_threshold, call->next, call->next ? PACK : stream ? STREAM : STORE};
    const RowFunction row_function = ROWS[(channels > 32) * 4 + (call->rprelu != 0) * 2 + (call->residual != 0)];
    /* waking the other threads costs more than a small map's work */
    const int64_t work = n_img * height * width * out_channels * k * k;
    const int threads = call->threads, parallel = threads > 1 && n_img * height > 1 && work >= PARALLEL_WORK;
#pragma omp parallel for schedule(static) num_threads(threads) if (parallel)
    for (int64_t row = 0; row < n_img * height; row++) row_function(&c, row);
    if (stream) _mm_sfence(); /* order the non-temporal stores before whatever reads `out` next */
}
