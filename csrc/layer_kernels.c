/* Layer kernels: register tiles of 4 rows by 8 columns (two vectors of 4 doubles), built
 * with GCC vector extensions.  On x86-64 an AVX2 copy is chosen at run time; elsewhere
 * (or without AVX2) the same code runs on narrower vectors.  -ffp-contract=off keeps
 * every a * b + c a multiply then an add. */
#include "cpu.h"
#include "layer_kernels.h"

typedef double v4 __attribute__((vector_size(32)));
typedef double v4_unaligned __attribute__((vector_size(32), aligned(8)));  /* for memory */

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Macros, not functions: a function taking or returning a 256-bit vector has a
 * different ABI with and without AVX. */
#define load4(p) (*(const v4_unaligned *)(p))
#define store4(p, v) (*(v4_unaligned *)(p) = (v))
/* x - (+0.0) is x for every x, -0.0 included: a broadcast */
#define splat(x) ((x) - (v4){0.0, 0.0, 0.0, 0.0})

/* Sums are carried across chunks of CHUNK terms in `out` (stored and reloaded exactly).
 * A chunk's operands for one tile column are first packed into a contiguous panel of
 * CHUNK x 8 doubles: the rows they come from lie a page or more apart, and walking them
 * in place missed the TLB and (at 4 KiB strides) L1's sets.  Measured on Zen 3 (K=256,
 * B=512, m=784): chunks of 128 terms 32-35 GFLOP/s, 1024 41-42 (fewer passes over the
 * sums; the panel streams from L2 well enough). */
enum { PANEL = 8, TILE_ROWS = 6 };

static size_t CHUNK = CG_KERNEL_CHUNK;  /* smaller only in tests (cg_set_kernel_chunk) */

size_t cg_set_kernel_chunk(size_t terms)
{
    size_t old = CHUNK;
    CHUNK = terms < 1 ? 1 : terms > CG_KERNEL_CHUNK ? CG_KERNEL_CHUNK : terms;
    return old;
}

ALWAYS_INLINE void pack_columns(double *panel, const double *const *rows, size_t offset,
                                size_t n)
{
    for (size_t e = 0; e < PANEL; e++) {
        const double *r = rows[e] + offset;
        for (size_t i = 0; i < n; i++)
            panel[i * PANEL + e] = r[i];
    }
}

/* The micro-kernel both products share: R rows of 8 sums (dst[r][0..8)), each advanced
 * by n terms, term k of row r being src[r][k] times column k of the packed panel.  R is
 * a constant at every call, so the accumulators live in registers (2 R of them). */
ALWAYS_INLINE void tile(int R, double *const *dst, const double *const *src,
                        const double *panel, size_t n)
{
    v4 acc[TILE_ROWS][2];
    for (int r = 0; r < R; r++) {
        acc[r][0] = load4(dst[r]);
        acc[r][1] = load4(dst[r] + 4);
    }
    for (size_t k = 0; k < n; k++) {
        v4 x0 = load4(panel + k * PANEL), x1 = load4(panel + k * PANEL + 4);
        for (int r = 0; r < R; r++) {
            v4 s = splat(src[r][k]);
            acc[r][0] = acc[r][0] + s * x0;
            acc[r][1] = acc[r][1] + s * x1;
        }
    }
    for (int r = 0; r < R; r++) {
        store4(dst[r], acc[r][0]);
        store4(dst[r] + 4, acc[r][1]);
    }
}

/* Rows r0.. of a product in tiles of TILE_ROWS, then 4, then 1.  dst(r) and src(r) give
 * row r's 8 sums and its coefficients. */
#define FOR_EACH_TILE(n_rows, panel, n, dst, src)                                     \
    do {                                                                              \
        size_t r0 = 0;                                                                \
        for (; r0 + TILE_ROWS <= (n_rows); r0 += TILE_ROWS) {                         \
            double *d_[TILE_ROWS];                                                    \
            const double *s_[TILE_ROWS];                                              \
            for (int r_ = 0; r_ < TILE_ROWS; r_++) {                                  \
                d_[r_] = dst(r0 + r_);                                                \
                s_[r_] = src(r0 + r_);                                                \
            }                                                                         \
            tile(TILE_ROWS, d_, s_, panel, n);                                        \
        }                                                                             \
        for (; r0 + 4 <= (n_rows); r0 += 4) {                                        \
            double *d_[4] = {dst(r0), dst(r0 + 1), dst(r0 + 2), dst(r0 + 3)};         \
            const double *s_[4] = {src(r0), src(r0 + 1), src(r0 + 2), src(r0 + 3)};   \
            tile(4, d_, s_, panel, n);                                                \
        }                                                                             \
        for (; r0 < (n_rows); r0++) {                                                 \
            double *d_[1] = {dst(r0)};                                                \
            const double *s_[1] = {src(r0)};                                          \
            tile(1, d_, s_, panel, n);                                                \
        }                                                                             \
    } while (0)

ALWAYS_INLINE void dot_tiles_body(const double *const *w, size_t K, const double *bias,
                                  const double *const *x, size_t B, size_t m, double *out,
                                  double *panel)
{
    for (size_t j = 0; j < K; j++)
        for (size_t b = 0; b < B; b++)
            out[j * B + b] = bias ? bias[j] : 0.0;
    for (size_t i0 = 0; i0 < m; i0 += CHUNK) {
        size_t n = i0 + CHUNK < m ? CHUNK : m - i0;
        size_t b0 = 0;
        for (; b0 + PANEL <= B; b0 += PANEL) {
            pack_columns(panel, x + b0, i0, n);
#define OUT_ROW(j) (out + (j) * B + b0)
#define WEIGHTS(j) (w[j] + i0)
            FOR_EACH_TILE(K, panel, n, OUT_ROW, WEIGHTS);
#undef OUT_ROW
#undef WEIGHTS
        }
        for (; b0 < B; b0++)
            for (size_t j = 0; j < K; j++) {
                double s = out[j * B + b0];
                for (size_t i = i0; i < i0 + n; i++)
                    s = s + w[j][i] * x[b0][i];
                out[j * B + b0] = s;
            }
    }
}

/* One chunk of n_k rows of a (at most CHUNK); coef rows are ld apart. */
ALWAYS_INLINE void rank_update_chunk(double *const *c, size_t n_r, const double *const *a,
                                     size_t n_k, size_t ld, const double *coef, size_t m,
                                     double *panel)
{
    size_t i0 = 0;
    for (; i0 + PANEL <= m; i0 += PANEL) {
        for (size_t k = 0; k < n_k; k++) {
            store4(panel + k * PANEL, load4(a[k] + i0));
            store4(panel + k * PANEL + 4, load4(a[k] + i0 + 4));
        }
#define SUMS(r) (c[r] + i0)
#define COEFS(r) (coef + (r) * ld)
        FOR_EACH_TILE(n_r, panel, n_k, SUMS, COEFS);
#undef SUMS
#undef COEFS
    }
    for (; i0 < m; i0++)
        for (size_t r = 0; r < n_r; r++) {
            double s = c[r][i0];
            for (size_t k = 0; k < n_k; k++)
                s = s + a[k][i0] * coef[r * ld + k];
            c[r][i0] = s;
        }
}

/* The examples (or neurons) in chunks: a chunk's rows of a, packed, stay in L1 while
 * the tiles of c pass over them; c carries each sum from one chunk to the next. */
ALWAYS_INLINE void rank_update_body(double *const *c, size_t n_r, const double *const *a,
                                    size_t n_k, const double *coef, size_t m, double *panel)
{
    for (size_t k0 = 0; k0 < n_k; k0 += CHUNK)
        rank_update_chunk(c, n_r, a + k0, (n_k - k0 < CHUNK ? n_k - k0 : CHUNK), n_k,
                          coef + k0, m, panel);
}

#ifdef CG_AVX2_COPIES
CG_TARGET_AVX2 static void dot_tiles_avx2(
    const double *const *w, size_t K, const double *bias, const double *const *x, size_t B,
    size_t m, double *out, double *panel)
{
    dot_tiles_body(w, K, bias, x, B, m, out, panel);
}

CG_TARGET_AVX2 static void rank_update_avx2(
    double *const *c, size_t n_r, const double *const *a, size_t n_k, const double *coef,
    size_t m, double *panel)
{
    rank_update_body(c, n_r, a, n_k, coef, m, panel);
}
#endif

void cg_dot_tiles(const double *const *w, size_t K, const double *bias,
                  const double *const *x, size_t B, size_t m, double *out, double *panel)
{
#ifdef CG_AVX2_COPIES
    if (cg_has_avx2()) {
        dot_tiles_avx2(w, K, bias, x, B, m, out, panel);
        return;
    }
#endif
    dot_tiles_body(w, K, bias, x, B, m, out, panel);
}

void cg_rank_update(double *const *c, size_t n_r, const double *const *a, size_t n_k,
                    const double *coef, size_t m, double *panel)
{
#ifdef CG_AVX2_COPIES
    if (cg_has_avx2()) {
        rank_update_avx2(c, n_r, a, n_k, coef, m, panel);
        return;
    }
#endif
    rank_update_body(c, n_r, a, n_k, coef, m, panel);
}
