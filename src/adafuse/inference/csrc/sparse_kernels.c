/*
 * Channel-subset convolution kernels for the sparse executor (adafuse.inference.kernels).
 *
 * Plain C over float buffers, loaded with ctypes (no Python or PyTorch API). One primitive:
 *
 *   y[m, j] = act(bias[j] + res[m, j] + sum_{tap, c < n} x[pixel(m, tap), c] * B[(tap * tap_rows + brow[c]) * ldb + j])
 *
 * i.e. a 2D convolution over an NHWC image (pixel p's channels at x + p * ldx) written as an implicit GEMM:
 * output pixels are GEMM rows, output channels GEMM columns, and the reduction runs over the taps of the
 * kernel window and the n input channels *present in x* (a compact subset of the conv's input channels;
 * brow[c] names the weight row of present channel c). The caller pads x with zeros (x is the padded image,
 * (h + 2 ph) x (w + 2 pw) pixels), so a tap of the window is one constant offset for every output pixel.
 *
 * The weight B is stored input-major, (taps * tap_rows, ldb): choosing a subset of input channels is a row
 * lookup, so the same packed weight serves every frame's different subset without a reorder. A subset of
 * *output* channels is a packed copy of the weight's columns made by the caller.
 *
 * Register-blocked microkernels (MR output pixels x NV vectors of output channels) for AVX-512 and AVX2 (FMA),
 * chosen at run time, and a portable scalar version. Accumulation is float32 with FMA.
 */

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define ADAFUSE_X86 1
#endif

#define KBLOCK_BYTES 24576 /* weight panel per reduction block, sized for a 32 KB L1 */

typedef struct {
    const float *x;      /* input image, pixel p at x + p * ldx */
    int64_t ldx;
    int h, w;            /* input spatial size, without the padding (x holds (h + 2 ph) x (w + 2 pw) pixels) */
    int n;               /* channels read per pixel (x[p * ldx + c], c < n) */
    int kh, kw, sh, sw, ph, pw;
    const float *b;      /* weight, (kh * kw * tap_rows, ldb) */
    int64_t ldb;
    int64_t tap_rows;
    const int32_t *brow; /* weight row of present channel c (within a tap) */
    int ncols;           /* output channels computed (columns of b and y) */
    const float *bias;   /* (ncols,) or NULL */
    int relu;
    const float *res;    /* optional residual added before the activation, pixel m at res + m * ldres */
    int64_t ldres;
    float *y;            /* output, pixel m at y + m * ldy */
    int64_t ldy;
    int ho, wo;          /* output spatial size */
    const float *zero;   /* >= n zeros (rows of a partial pixel tile) */
} conv_args;

/* Pointers to the top-left window pixel (tap 0) of output pixels m0 .. m0 + mr - 1 in the padded input; rows
   past mr point at the zero row (their tap offsets stay inside the zero buffer: see zero_row_floats). */
static inline void tile_rows(const conv_args *a, int m0, int mr, int mr_full, const float **rows) {
    int64_t wp = a->w + 2 * a->pw;
    for (int r = 0; r < mr_full; r++) {
        if (r >= mr) { rows[r] = a->zero; continue; }
        int m = m0 + r;
        int oy = m / a->wo, ox = m - oy * a->wo;
        rows[r] = a->x + ((int64_t)oy * a->sh * wp + (int64_t)ox * a->sw) * a->ldx;
    }
}

/* Offset of tap (dy, dx) from tap 0 in the padded input; 0 for the zero rows' pointers. */
static inline int64_t tap_offset(const conv_args *a, int dy, int dx) {
    return ((int64_t)dy * (a->w + 2 * a->pw) + dx) * a->ldx;
}

/* ------------------------------------------------------------------------------------------ scalar */

static void conv_scalar(const conv_args *a, int m_begin, int m_end) {
    const float *rows[1];
    for (int m = m_begin; m < m_end; m++) {
        float *yrow = a->y + (int64_t)m * a->ldy;
        for (int j = 0; j < a->ncols; j++) yrow[j] = a->bias ? a->bias[j] : 0.0f;
        tile_rows(a, m, 1, 1, rows);
        for (int dy = 0; dy < a->kh; dy++) {
            for (int dx = 0; dx < a->kw; dx++) {
                const float *xr = rows[0] + tap_offset(a, dy, dx);
                const float *bt = a->b + (int64_t)(dy * a->kw + dx) * a->tap_rows * a->ldb;
                for (int c = 0; c < a->n; c++) {
                    float v = xr[c];
                    const float *brow = bt + (int64_t)a->brow[c] * a->ldb;
                    for (int j = 0; j < a->ncols; j++) yrow[j] += v * brow[j];
                }
            }
        }
        if (a->res)
            for (int j = 0; j < a->ncols; j++) yrow[j] += a->res[(int64_t)m * a->ldres + j];
        if (a->relu)
            for (int j = 0; j < a->ncols; j++) yrow[j] = yrow[j] > 0.0f ? yrow[j] : 0.0f;
    }
}

#ifdef ADAFUSE_X86
/* ------------------------------------------------------------------------------------------ AVX-512 */

#define MR512 6
#define AVX512_TARGET __attribute__((target("avx512f,fma")))

/* Inner loop of a tile: acc[MR512][NV] += rows[r][c] * B[brow[c]][0 .. NV*16) for c in [c0, c1). The
   accumulators are loaded from and stored to `acc` around the loop, so that they live in registers inside. */
#define DEFINE_INNER512(NV)                                                                                      \
    AVX512_TARGET static void inner512_##NV(int c0, int c1, const float *const *rows, const int32_t *brow,      \
                                            const float *bt, int64_t ldb, __mmask16 tail, float *acc) {          \
        __m512 s[MR512][NV];                                                                                     \
        for (int r = 0; r < MR512; r++)                                                                          \
            for (int v = 0; v < NV; v++) s[r][v] = _mm512_load_ps(acc + (r * NV + v) * 16);                      \
        const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3], *r4 = rows[4], *r5 = rows[5];   \
        for (int c = c0; c < c1; c++) {                                                                          \
            const float *bp = bt + (int64_t)brow[c] * ldb;                                                       \
            __m512 bv[NV];                                                                                       \
            for (int v = 0; v < NV - 1; v++) bv[v] = _mm512_loadu_ps(bp + 16 * v);                              \
            bv[NV - 1] = _mm512_maskz_loadu_ps(tail, bp + 16 * (NV - 1));                                        \
            __m512 av;                                                                                           \
            av = _mm512_set1_ps(r0[c]);                                                                          \
            for (int v = 0; v < NV; v++) s[0][v] = _mm512_fmadd_ps(av, bv[v], s[0][v]);                         \
            av = _mm512_set1_ps(r1[c]);                                                                          \
            for (int v = 0; v < NV; v++) s[1][v] = _mm512_fmadd_ps(av, bv[v], s[1][v]);                         \
            av = _mm512_set1_ps(r2[c]);                                                                          \
            for (int v = 0; v < NV; v++) s[2][v] = _mm512_fmadd_ps(av, bv[v], s[2][v]);                         \
            av = _mm512_set1_ps(r3[c]);                                                                          \
            for (int v = 0; v < NV; v++) s[3][v] = _mm512_fmadd_ps(av, bv[v], s[3][v]);                         \
            av = _mm512_set1_ps(r4[c]);                                                                          \
            for (int v = 0; v < NV; v++) s[4][v] = _mm512_fmadd_ps(av, bv[v], s[4][v]);                         \
            av = _mm512_set1_ps(r5[c]);                                                                          \
            for (int v = 0; v < NV; v++) s[5][v] = _mm512_fmadd_ps(av, bv[v], s[5][v]);                         \
        }                                                                                                        \
        for (int r = 0; r < MR512; r++)                                                                          \
            for (int v = 0; v < NV; v++) _mm512_store_ps(acc + (r * NV + v) * 16, s[r][v]);                      \
    }

/* One MR512 x (NV * 16) tile over the reduction range [k0, k1) of the flattened (tap, channel) index; the last
   vector is masked by `tail`. The first range starts from zero, later ones add to the partial sums in y; the
   last one adds the bias and applies the activation. */
#define DEFINE_TILE512(NV)                                                                                       \
    DEFINE_INNER512(NV)                                                                                          \
    AVX512_TARGET static void tile512_##NV(const conv_args *a, const float *const *base, int m0, int mr, int j0, \
                                           __mmask16 tail, int k0, int k1) {                                    \
        float acc[MR512 * NV * 16] __attribute__((aligned(64)));                                                 \
        const int ktotal = a->kh * a->kw * a->n;                                                                 \
        for (int r = 0; r < MR512; r++)                                                                          \
            for (int v = 0; v < NV; v++) {                                                                       \
                __mmask16 k = v == NV - 1 ? tail : (__mmask16)0xFFFF;                                            \
                __m512 init = (k0 == 0 || r >= mr) ? _mm512_setzero_ps()                                         \
                    : _mm512_maskz_loadu_ps(k, a->y + (int64_t)(m0 + r) * a->ldy + j0 + 16 * v);                 \
                _mm512_store_ps(acc + (r * NV + v) * 16, init);                                                  \
            }                                                                                                    \
        const float *rows[MR512];                                                                                \
        for (int k = k0; k < k1;) {                                                                              \
            int tap = k / a->n, c0 = k - tap * a->n;                                                             \
            int c1 = a->n < c0 + (k1 - k) ? a->n : c0 + (k1 - k);                                                \
            int dy = tap / a->kw, dx = tap - dy * a->kw;                                                         \
            int64_t off = tap_offset(a, dy, dx);                                                                 \
            for (int r = 0; r < MR512; r++) rows[r] = r < mr ? base[r] + off : a->zero;                          \
            const float *bt = a->b + (int64_t)tap * a->tap_rows * a->ldb + j0;                                   \
            inner512_##NV(c0, c1, rows, a->brow, bt, a->ldb, tail, acc);                                         \
            k += c1 - c0;                                                                                        \
        }                                                                                                        \
        const int final = k1 == ktotal;                                                                          \
        const __m512 zero = _mm512_setzero_ps();                                                                 \
        for (int v = 0; v < NV; v++) {                                                                           \
            __mmask16 k = v == NV - 1 ? tail : (__mmask16)0xFFFF;                                                \
            __m512 bias = (final && a->bias) ? _mm512_maskz_loadu_ps(k, a->bias + j0 + 16 * v)                   \
                                             : _mm512_setzero_ps();                                              \
            for (int r = 0; r < mr; r++) {                                                                       \
                __m512 o = _mm512_add_ps(_mm512_load_ps(acc + (r * NV + v) * 16), bias);                         \
                if (final && a->res)                                                                             \
                    o = _mm512_add_ps(o, _mm512_maskz_loadu_ps(k, a->res + (int64_t)(m0 + r) * a->ldres + j0 + 16 * v)); \
                if (final && a->relu) o = _mm512_max_ps(o, zero);                                                \
                _mm512_mask_storeu_ps(a->y + (int64_t)(m0 + r) * a->ldy + j0 + 16 * v, k, o);                    \
            }                                                                                                    \
        }                                                                                                        \
    }

#pragma GCC push_options
#pragma GCC optimize("unroll-loops")
DEFINE_TILE512(1)
DEFINE_TILE512(2)
DEFINE_TILE512(3)
DEFINE_TILE512(4)
#pragma GCC pop_options

AVX512_TARGET static void conv_avx512(const conv_args *a, int m_begin, int m_end) {
    /* Goto-style blocking: for each block of columns and each block of the reduction (a weight panel of
       about 24 KB that stays in L1), sweep every tile of output pixels. */
    const int ktotal = a->kh * a->kw * a->n;
    const float *base[MR512];
    if (ktotal == 0) { /* no input channel present: the output is the bias */
        for (int m = m_begin; m < m_end; m++)
            for (int j = 0; j < a->ncols; j++) {
                float v = (a->bias ? a->bias[j] : 0.0f) + (a->res ? a->res[(int64_t)m * a->ldres + j] : 0.0f);
                a->y[(int64_t)m * a->ldy + j] = (a->relu && v < 0.0f) ? 0.0f : v;
            }
        return;
    }
    for (int j0 = 0; j0 < a->ncols; j0 += 64) {
        int left = a->ncols - j0;
        int nv = left >= 64 ? 4 : (left + 15) / 16;
        int last = left >= 64 ? 16 : left - 16 * (nv - 1);
        __mmask16 tail = (__mmask16)((1u << last) - 1u);
        int kb = KBLOCK_BYTES / (nv * 64);
        for (int k0 = 0; k0 < ktotal; k0 += kb) {
            int k1 = k0 + kb < ktotal ? k0 + kb : ktotal;
            for (int m0 = m_begin; m0 < m_end; m0 += MR512) {
                int mr = m_end - m0 < MR512 ? m_end - m0 : MR512;
                tile_rows(a, m0, mr, MR512, base);
                switch (nv) {
                    case 4: tile512_4(a, base, m0, mr, j0, tail, k0, k1); break;
                    case 3: tile512_3(a, base, m0, mr, j0, tail, k0, k1); break;
                    case 2: tile512_2(a, base, m0, mr, j0, tail, k0, k1); break;
                    default: tile512_1(a, base, m0, mr, j0, tail, k0, k1);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ AVX2 */

#define MR256 6
#define AVX2_TARGET __attribute__((target("avx2,fma")))

#define DEFINE_TILE256(NV)                                                                                       \
    AVX2_TARGET static void tile256_##NV(const conv_args *a, int m0, int mr, int j0, __m256i tail) {            \
        __m256 acc[MR256][NV];                                                                                   \
        for (int r = 0; r < MR256; r++)                                                                          \
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();                                        \
        const float *base[MR256], *rows[MR256];                                                                    \
        tile_rows(a, m0, mr, MR256, base);                                                                       \
        for (int dy = 0; dy < a->kh; dy++) {                                                                     \
            for (int dx = 0; dx < a->kw; dx++) {                                                                 \
                int64_t off = tap_offset(a, dy, dx);                                                             \
                for (int r = 0; r < MR256; r++) rows[r] = r < mr ? base[r] + off : a->zero;                       \
                const float *bt = a->b + (int64_t)(dy * a->kw + dx) * a->tap_rows * a->ldb + j0;                 \
                const int32_t *brow = a->brow;                                                                   \
                const int64_t ldb = a->ldb;                                                                      \
                for (int c = 0; c < a->n; c++) {                                                                 \
                    const float *bp = bt + (int64_t)brow[c] * ldb;                                               \
                    __m256 bv[NV];                                                                               \
                    for (int v = 0; v < NV - 1; v++) bv[v] = _mm256_loadu_ps(bp + 8 * v);                        \
                    bv[NV - 1] = _mm256_maskload_ps(bp + 8 * (NV - 1), tail);                                    \
                    for (int r = 0; r < MR256; r++) {                                                            \
                        __m256 av = _mm256_broadcast_ss(rows[r] + c);                                            \
                        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(av, bv[v], acc[r][v]);          \
                    }                                                                                            \
                }                                                                                                \
            }                                                                                                    \
        }                                                                                                        \
        const __m256i full = _mm256_set1_epi32(-1);                                                              \
        __m256 bias[NV];                                                                                         \
        for (int v = 0; v < NV; v++)                                                                             \
            bias[v] = a->bias ? _mm256_maskload_ps(a->bias + j0 + 8 * v, v == NV - 1 ? tail : full)              \
                              : _mm256_setzero_ps();                                                             \
        const __m256 zero = _mm256_setzero_ps();                                                                 \
        for (int r = 0; r < mr; r++) {                                                                           \
            float *yp = a->y + (int64_t)(m0 + r) * a->ldy + j0;                                                  \
            for (int v = 0; v < NV; v++) {                                                                       \
                __m256 o = _mm256_add_ps(acc[r][v], bias[v]);                                                    \
                if (a->res)                                                                                      \
                    o = _mm256_add_ps(o, _mm256_maskload_ps(a->res + (int64_t)(m0 + r) * a->ldres + j0 + 8 * v,  \
                                                            v == NV - 1 ? tail : full));                         \
                if (a->relu) o = _mm256_max_ps(o, zero);                                                         \
                _mm256_maskstore_ps(yp + 8 * v, v == NV - 1 ? tail : full, o);                                   \
            }                                                                                                    \
        }                                                                                                        \
    }

#pragma GCC push_options
#pragma GCC optimize("unroll-loops")
DEFINE_TILE256(1)
DEFINE_TILE256(2)
#pragma GCC pop_options

AVX2_TARGET static void conv_avx2(const conv_args *a, int m_begin, int m_end) {
    for (int j0 = 0; j0 < a->ncols; j0 += 16) {
        int left = a->ncols - j0;
        int nv = left >= 16 ? 2 : (left + 7) / 8;
        int last = left >= 16 ? 8 : left - 8 * (nv - 1);
        int lanes[8];
        for (int i = 0; i < 8; i++) lanes[i] = i < last ? -1 : 0;
        __m256i tail = _mm256_loadu_si256((const __m256i *)lanes);
        for (int m0 = m_begin; m0 < m_end; m0 += MR256) {
            int mr = m_end - m0 < MR256 ? m_end - m0 : MR256;
            if (nv == 2) tile256_2(a, m0, mr, j0, tail);
            else tile256_1(a, m0, mr, j0, tail);
        }
    }
}
#endif /* ADAFUSE_X86 */

/* ------------------------------------------------------------------------------------------ API */

/* Instruction set used by conv_subset: 0 scalar, 1 AVX2+FMA, 2 AVX-512F. `limit` caps it (-1: best). */
static int isa_level = -1;

int adafuse_best_isa(void) {
#ifdef ADAFUSE_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")) return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

int adafuse_set_isa(int limit) {
    int best = adafuse_best_isa();
    isa_level = (limit < 0 || limit > best) ? best : limit;
    return isa_level;
}

/* Output pixels [m_begin, m_end) of the channel-subset convolution described at the top of this file.
   Returns 0, or -1 for invalid arguments. Thread-safe: callers split the output pixels between threads. */
int adafuse_conv_subset(const float *x, int64_t ldx, int h, int w, int n, int kh, int kw, int sh, int sw, int ph,
                        int pw, const float *b, int64_t ldb, int64_t tap_rows_, const int32_t *brow, int ncols,
                        const float *bias, int relu, const float *res, int64_t ldres, float *y, int64_t ldy, int ho,
                        int wo, const float *zero, int m_begin, int m_end) {
    if (n < 0 || ncols <= 0 || kh <= 0 || kw <= 0 || sh <= 0 || sw <= 0 || m_begin < 0 || m_end > ho * wo)
        return -1;
    if (isa_level < 0) adafuse_set_isa(-1);
    conv_args a = {x, ldx, h, w, n, kh, kw, sh, sw, ph, pw, b, ldb, tap_rows_, brow, ncols, bias, relu,
                   res, ldres, y, ldy, ho, wo, zero};
#ifdef ADAFUSE_X86
    if (isa_level == 2) { conv_avx512(&a, m_begin, m_end); return 0; }
    if (isa_level == 1) { conv_avx2(&a, m_begin, m_end); return 0; }
#endif
    conv_scalar(&a, m_begin, m_end);
    return 0;
}

/* Copy columns idx[0 .. nidx) (or the first nidx columns if idx is NULL) of the h x w NHWC image src into
   columns col0 .. col0 + nidx of the interior of the zero-padded image dst ((h + 2 ph) x (w + 2 pw) pixels of
   `width` channels, row stride ldd floats). If col0 == 0 the padding border of dst is zeroed too. */
void adafuse_gather_padded(float *dst, int64_t ldd, int width, int col0, const float *src, int64_t lds,
                           const int32_t *idx, int nidx, int h, int w, int ph, int pw) {
    int64_t wp = w + 2 * pw, hp = h + 2 * ph;
    if (width <= 0) return;
    if (col0 == 0) {
        for (int64_t y = 0; y < hp; y++) {
            int border_row = y < ph || y >= ph + h;
            for (int64_t x = 0; x < wp; x++)
                if (border_row || x < pw || x >= pw + w) memset(dst + (y * wp + x) * ldd, 0, sizeof(float) * width);
        }
    }
    if (nidx <= 0) return;
    for (int64_t y = 0; y < h; y++) {
        for (int64_t x = 0; x < w; x++) {
            const float *s = src + (y * w + x) * lds;
            float *d = dst + ((y + ph) * wp + x + pw) * ldd + col0;
            if (idx == NULL) memcpy(d, s, sizeof(float) * nidx);
            else for (int i = 0; i < nidx; i++) d[i] = s[idx[i]];
        }
    }
}

/* The build names the library like a Python extension module, whose linker step expects this symbol on some
   platforms. It is never imported as a module (ctypes loads it), so the function only reports that. */
void *PyInit__sparse_kernels(void) { return 0; }

/* dst[r, i] = src[r * lds + ids[i]] for r < rows, i < nids (dst row stride nids): the columns ids of a row-major
   matrix, packed (the producer's output-channel subset of an input-major weight). */
void adafuse_pack_columns(float *dst, const float *src, int64_t lds, int64_t rows, const int64_t *ids, int nids) {
    for (int64_t r = 0; r < rows; r++) {
        const float *s = src + r * lds;
        float *d = dst + r * nids;
        for (int i = 0; i < nids; i++) d[i] = s[ids[i]];
    }
}
