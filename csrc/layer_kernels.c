/* Layer kernels: register tiles of 4 rows by 8 columns (two vectors of 4 doubles), built
 * with GCC vector extensions.  On x86-64 an AVX2 copy is chosen at run time; elsewhere
 * (or without AVX2) the same code runs on narrower vectors.  -ffp-contract=off keeps
 * every a * b + c a multiply then an add. */
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
 * CHUNK x 8 doubles (8 KiB): the rows they come from lie a page or more apart, and
 * walking 128 of them at once missed the TLB and (at 4 KiB strides) L1's sets. */
enum { CHUNK = 128, PANEL = 8 };

ALWAYS_INLINE void pack_columns(double *panel, const double *const *rows, size_t offset,
                                size_t n)
{
    for (size_t e = 0; e < PANEL; e++) {
        const double *r = rows[e] + offset;
        for (size_t i = 0; i < n; i++)
            panel[i * PANEL + e] = r[i];
    }
}

ALWAYS_INLINE void dot_tiles_body(const double *const *w, size_t K, const double *bias,
                                  const double *const *x, size_t B, size_t m, double *out)
{
    double panel[CHUNK * PANEL] __attribute__((aligned(32)));
    for (size_t j = 0; j < K; j++)
        for (size_t b = 0; b < B; b++)
            out[j * B + b] = bias ? bias[j] : 0.0;
    for (size_t i0 = 0; i0 < m; i0 += CHUNK) {
        size_t n = i0 + CHUNK < m ? CHUNK : m - i0;
        size_t b0 = 0;
        for (; b0 + PANEL <= B; b0 += PANEL) {
            pack_columns(panel, x + b0, i0, n);
            size_t j0 = 0;
            for (; j0 + 4 <= K; j0 += 4) {
                const double *w0 = w[j0] + i0, *w1 = w[j0 + 1] + i0, *w2 = w[j0 + 2] + i0,
                             *w3 = w[j0 + 3] + i0;
                double *o = out + j0 * B + b0;
                v4 a00 = load4(o), a01 = load4(o + 4), a10 = load4(o + B), a11 = load4(o + B + 4);
                v4 a20 = load4(o + 2 * B), a21 = load4(o + 2 * B + 4);
                v4 a30 = load4(o + 3 * B), a31 = load4(o + 3 * B + 4);
                for (size_t i = 0; i < n; i++) {
                    v4 x0 = load4(panel + i * PANEL), x1 = load4(panel + i * PANEL + 4);
                    v4 s0 = splat(w0[i]), s1 = splat(w1[i]), s2 = splat(w2[i]), s3 = splat(w3[i]);
                    a00 = a00 + s0 * x0;
                    a01 = a01 + s0 * x1;
                    a10 = a10 + s1 * x0;
                    a11 = a11 + s1 * x1;
                    a20 = a20 + s2 * x0;
                    a21 = a21 + s2 * x1;
                    a30 = a30 + s3 * x0;
                    a31 = a31 + s3 * x1;
                }
                store4(o, a00);
                store4(o + 4, a01);
                store4(o + B, a10);
                store4(o + B + 4, a11);
                store4(o + 2 * B, a20);
                store4(o + 2 * B + 4, a21);
                store4(o + 3 * B, a30);
                store4(o + 3 * B + 4, a31);
            }
            for (; j0 < K; j0++) {
                double *o = out + j0 * B + b0;
                v4 a0 = load4(o), a1 = load4(o + 4);
                const double *wj = w[j0] + i0;
                for (size_t i = 0; i < n; i++) {
                    v4 s = splat(wj[i]);
                    a0 = a0 + s * load4(panel + i * PANEL);
                    a1 = a1 + s * load4(panel + i * PANEL + 4);
                }
                store4(o, a0);
                store4(o + 4, a1);
            }
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
                                     size_t n_k, size_t ld, const double *coef, size_t m)
{
    double panel[CHUNK * PANEL] __attribute__((aligned(32)));
    size_t i0 = 0;
    for (; i0 + PANEL <= m; i0 += PANEL) {
        for (size_t k = 0; k < n_k; k++) {
            store4(panel + k * PANEL, load4(a[k] + i0));
            store4(panel + k * PANEL + 4, load4(a[k] + i0 + 4));
        }
        size_t r0 = 0;
        for (; r0 + 4 <= n_r; r0 += 4) {
            double *c0 = c[r0] + i0, *c1 = c[r0 + 1] + i0, *c2 = c[r0 + 2] + i0,
                   *c3 = c[r0 + 3] + i0;
            v4 a00 = load4(c0), a01 = load4(c0 + 4), a10 = load4(c1), a11 = load4(c1 + 4);
            v4 a20 = load4(c2), a21 = load4(c2 + 4), a30 = load4(c3), a31 = load4(c3 + 4);
            const double *g0 = coef + r0 * ld, *g1 = g0 + ld, *g2 = g1 + ld, *g3 = g2 + ld;
            for (size_t k = 0; k < n_k; k++) {
                v4 x0 = load4(panel + k * PANEL), x1 = load4(panel + k * PANEL + 4);
                v4 s0 = splat(g0[k]), s1 = splat(g1[k]), s2 = splat(g2[k]), s3 = splat(g3[k]);
                a00 = a00 + x0 * s0;
                a01 = a01 + x1 * s0;
                a10 = a10 + x0 * s1;
                a11 = a11 + x1 * s1;
                a20 = a20 + x0 * s2;
                a21 = a21 + x1 * s2;
                a30 = a30 + x0 * s3;
                a31 = a31 + x1 * s3;
            }
            store4(c0, a00);
            store4(c0 + 4, a01);
            store4(c1, a10);
            store4(c1 + 4, a11);
            store4(c2, a20);
            store4(c2 + 4, a21);
            store4(c3, a30);
            store4(c3 + 4, a31);
        }
        for (; r0 < n_r; r0++) {
            v4 a0 = load4(c[r0] + i0), a1 = load4(c[r0] + i0 + 4);
            const double *g = coef + r0 * ld;
            for (size_t k = 0; k < n_k; k++) {
                v4 s = splat(g[k]);
                a0 = a0 + load4(panel + k * PANEL) * s;
                a1 = a1 + load4(panel + k * PANEL + 4) * s;
            }
            store4(c[r0] + i0, a0);
            store4(c[r0] + i0 + 4, a1);
        }
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
                                    size_t n_k, const double *coef, size_t m)
{
    for (size_t k0 = 0; k0 < n_k; k0 += CHUNK)
        rank_update_chunk(c, n_r, a + k0, (n_k - k0 < CHUNK ? n_k - k0 : CHUNK), n_k,
                          coef + k0, m);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_AVX2_COPY 1
__attribute__((target("avx2"))) static void dot_tiles_avx2(
    const double *const *w, size_t K, const double *bias, const double *const *x, size_t B,
    size_t m, double *out)
{
    dot_tiles_body(w, K, bias, x, B, m, out);
}

__attribute__((target("avx2"))) static void rank_update_avx2(
    double *const *c, size_t n_r, const double *const *a, size_t n_k, const double *coef,
    size_t m)
{
    rank_update_body(c, n_r, a, n_k, coef, m);
}

static int has_avx2(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") != 0;
    }
    return known;
}
#endif

void cg_dot_tiles(const double *const *w, size_t K, const double *bias,
                  const double *const *x, size_t B, size_t m, double *out)
{
#ifdef HAVE_AVX2_COPY
    if (has_avx2()) {
        dot_tiles_avx2(w, K, bias, x, B, m, out);
        return;
    }
#endif
    dot_tiles_body(w, K, bias, x, B, m, out);
}

void cg_rank_update(double *const *c, size_t n_r, const double *const *a, size_t n_k,
                    const double *coef, size_t m)
{
#ifdef HAVE_AVX2_COPY
    if (has_avx2()) {
        rank_update_avx2(c, n_r, a, n_k, coef, m);
        return;
    }
#endif
    rank_update_body(c, n_r, a, n_k, coef, m);
}
