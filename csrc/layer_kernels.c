/* Layer kernels: register tiles of 6 rows by 8 columns (two vectors of 4 doubles), built
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
/* four sums cs apart (cs == 1: side by side) */
#define load_cols(p, cs) \
    ((cs) == 1 ? load4(p) : (v4){(p)[0], (p)[(cs)], (p)[2 * (cs)], (p)[3 * (cs)]})
#define store_cols(p, cs, v)                                                         \
    do {                                                                              \
        if ((cs) == 1) {                                                              \
            store4(p, v);                                                             \
        } else {                                                                      \
            (p)[0] = (v)[0];                                                          \
            (p)[(cs)] = (v)[1];                                                       \
            (p)[2 * (cs)] = (v)[2];                                                   \
            (p)[3 * (cs)] = (v)[3];                                                   \
        }                                                                             \
    } while (0)

/* Sums are carried across chunks of CHUNK terms in their output (stored and reloaded
 * exactly).  A chunk's operands for one tile column are first packed into a contiguous
 * panel of CHUNK x 8 doubles: the rows they come from lie a page or more apart, and
 * walking them in place missed the TLB and (at 4 KiB strides) L1's sets.  Measured on
 * Zen 3 (K=256, B=512, m=784): chunks of 128 terms 32-35 GFLOP/s, 1024 41-42 (fewer
 * passes over the sums; the panel streams from L2 well enough). */
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

/* What a tile does besides its sums: save (rows or NULL) receives the sums' values
 * before the tile adds to them; bad (or NULL) gathers x - x of the results, which is
 * NaN once any result is inf or NaN. */
typedef struct {
    double *const *save;
    v4 *bad;
} tile_extras;

/* The micro-kernel both products share: R rows of 8 sums (row r's sums at dst[r],
 * dcs apart), each advanced by n terms, term k of row r being src[r][k * ks] times
 * column k of the packed panel.  R is a constant at every call, so the accumulators
 * live in registers (2 R of them). */
ALWAYS_INLINE void tile(int R, double *const *dst, size_t dcs, const double *const *src,
                        size_t ks, const double *panel, size_t n, tile_extras extras)
{
    v4 acc[TILE_ROWS][2];
    for (int r = 0; r < R; r++) {
        acc[r][0] = load_cols(dst[r], dcs);
        acc[r][1] = load_cols(dst[r] + 4 * dcs, dcs);
        if (extras.save) {
            store4(extras.save[r], acc[r][0]);
            store4(extras.save[r] + 4, acc[r][1]);
        }
    }
    for (size_t k = 0; k < n; k++) {
        v4 x0 = load4(panel + k * PANEL), x1 = load4(panel + k * PANEL + 4);
        for (int r = 0; r < R; r++) {
            v4 s = splat(src[r][k * ks]);
            acc[r][0] = acc[r][0] + s * x0;
            acc[r][1] = acc[r][1] + s * x1;
        }
    }
    for (int r = 0; r < R; r++) {
        store_cols(dst[r], dcs, acc[r][0]);
        store_cols(dst[r] + 4 * dcs, dcs, acc[r][1]);
        if (extras.bad)
            *extras.bad = *extras.bad + (acc[r][0] - acc[r][0]) + (acc[r][1] - acc[r][1]);
    }
}

/* Rows 0..n_rows of a product in tiles of TILE_ROWS, then 4, then 1.  DST(r), SRC(r)
 * and SAVE(r) give row r's 8 sums, its coefficients and where its sums are saved. */
#define TILE_ROWS_OF(R, r0, dcs, ks, panel, n, DST, SRC, SAVE, save_on, bad)          \
    do {                                                                              \
        double *d_[R], *v_[R];                                                        \
        const double *s_[R];                                                          \
        for (int r_ = 0; r_ < (R); r_++) {                                            \
            d_[r_] = DST((r0) + r_);                                                  \
            s_[r_] = SRC((r0) + r_);                                                  \
            v_[r_] = (save_on) ? SAVE((r0) + r_) : NULL;                              \
        }                                                                             \
        tile(R, d_, dcs, s_, ks, panel, n, (tile_extras){(save_on) ? v_ : NULL, bad}); \
    } while (0)

#define FOR_EACH_TILE(n_rows, dcs, ks, panel, n, DST, SRC, SAVE, save_on, bad)         \
    do {                                                                              \
        size_t r0 = 0;                                                                \
        for (; r0 + TILE_ROWS <= (n_rows); r0 += TILE_ROWS)                           \
            TILE_ROWS_OF(TILE_ROWS, r0, dcs, ks, panel, n, DST, SRC, SAVE, save_on, bad); \
        for (; r0 + 4 <= (n_rows); r0 += 4)                                           \
            TILE_ROWS_OF(4, r0, dcs, ks, panel, n, DST, SRC, SAVE, save_on, bad);     \
        for (; r0 < (n_rows); r0++)                                                   \
            TILE_ROWS_OF(1, r0, dcs, ks, panel, n, DST, SRC, SAVE, save_on, bad);     \
    } while (0)

#define all_zero(bad) \
    ((bad)[0] == 0.0 && (bad)[1] == 0.0 && (bad)[2] == 0.0 && (bad)[3] == 0.0)

ALWAYS_INLINE int dot_tiles_body(const double *const *w, size_t K, const double *bias,
                                 const double *const *x, size_t B, size_t m, double *out,
                                 double *panel)
{
    v4 bad = {0.0, 0.0, 0.0, 0.0};
    double bad_tail = 0.0;
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < K; j++)
            out[b * K + j] = bias ? bias[j] : 0.0;
    for (size_t i0 = 0; i0 < m || i0 == 0; i0 += CHUNK) {
        size_t n = i0 + CHUNK < m ? CHUNK : m - i0;
        int last = i0 + CHUNK >= m;
        size_t b0 = 0;
        for (; b0 + PANEL <= B; b0 += PANEL) {
            pack_columns(panel, x + b0, i0, n);
#define OUT_ROW(j) (out + b0 * K + (j))
#define WEIGHTS(j) (w[j] + i0)
#define NO_SAVE(j) ((double *)NULL)
            FOR_EACH_TILE(K, K, 1, panel, n, OUT_ROW, WEIGHTS, NO_SAVE, 0,
                          last ? &bad : NULL);
#undef OUT_ROW
#undef WEIGHTS
#undef NO_SAVE
        }
        for (; b0 < B; b0++)
            for (size_t j = 0; j < K; j++) {
                double s = out[b0 * K + j];
                for (size_t i = i0; i < i0 + n; i++)
                    s = s + w[j][i] * x[b0][i];
                out[b0 * K + j] = s;
                if (last)
                    bad_tail = bad_tail + (s - s);
            }
        if (last)
            break;
    }
    return all_zero(bad) && bad_tail == 0.0;
}

/* One chunk of n_k rows of a (at most CHUNK), coefficient k of row r at
 * coef[r * rs + k * ks]; saves c first (saved != NULL), checks the results (bad). */
ALWAYS_INLINE void rank_update_chunk(double *const *c, size_t n_r, const double *const *a,
                                     size_t n_k, const double *coef, size_t rs, size_t ks,
                                     size_t m, double *const *saved, v4 *bad,
                                     double *bad_tail, double *panel)
{
    size_t i0 = 0;
    for (; i0 + PANEL <= m; i0 += PANEL) {
        for (size_t k = 0; k < n_k; k++) {
            store4(panel + k * PANEL, load4(a[k] + i0));
            store4(panel + k * PANEL + 4, load4(a[k] + i0 + 4));
        }
#define SUMS(r) (c[r] + i0)
#define COEFS(r) (coef + (r) * rs)
#define SAVED(r) (saved[r] + i0)
        FOR_EACH_TILE(n_r, 1, ks, panel, n_k, SUMS, COEFS, SAVED, saved != NULL, bad);
#undef SUMS
#undef COEFS
#undef SAVED
    }
    for (; i0 < m; i0++)
        for (size_t r = 0; r < n_r; r++) {
            double s = c[r][i0];
            if (saved)
                saved[r][i0] = s;
            for (size_t k = 0; k < n_k; k++)
                s = s + a[k][i0] * coef[r * rs + k * ks];
            c[r][i0] = s;
            if (bad)
                *bad_tail = *bad_tail + (s - s);
        }
}

/* The terms in chunks: a chunk's rows of a, packed, stay near while the tiles of c pass
 * over them; c carries each sum from one chunk to the next.  c is saved while the first
 * chunk loads it and checked while the last stores it. */
ALWAYS_INLINE int rank_update_body(double *const *c, size_t n_r, const double *const *a,
                                   size_t n_k, const double *coef, size_t rs, size_t ks,
                                   size_t m, double *const *saved, double *panel)
{
    v4 bad = {0.0, 0.0, 0.0, 0.0};
    double bad_tail = 0.0;
    for (size_t k0 = 0; k0 < n_k || k0 == 0; k0 += CHUNK) {
        size_t n = k0 + CHUNK < n_k ? CHUNK : n_k - k0;
        int last = k0 + CHUNK >= n_k;
        rank_update_chunk(c, n_r, a + k0, n, coef + k0 * ks, rs, ks, m,
                          k0 == 0 ? saved : NULL, last ? &bad : NULL, &bad_tail, panel);
        if (last)
            break;
    }
    return all_zero(bad) && bad_tail == 0.0;
}

#ifdef CG_AVX2_COPIES
CG_TARGET_AVX2 static int dot_tiles_avx2(
    const double *const *w, size_t K, const double *bias, const double *const *x, size_t B,
    size_t m, double *out, double *panel)
{
    return dot_tiles_body(w, K, bias, x, B, m, out, panel);
}

CG_TARGET_AVX2 static int rank_update_avx2(
    double *const *c, size_t n_r, const double *const *a, size_t n_k, const double *coef,
    size_t rs, size_t ks, size_t m, double *const *saved, double *panel)
{
    return rank_update_body(c, n_r, a, n_k, coef, rs, ks, m, saved, panel);
}
#endif

int cg_dot_tiles(const double *const *w, size_t K, const double *bias,
                 const double *const *x, size_t B, size_t m, double *out, double *panel)
{
#ifdef CG_AVX2_COPIES
    if (cg_has_avx2())
        return dot_tiles_avx2(w, K, bias, x, B, m, out, panel);
#endif
    return dot_tiles_body(w, K, bias, x, B, m, out, panel);
}

int cg_rank_update(double *const *c, size_t n_r, const double *const *a, size_t n_k,
                   const double *coef, size_t rs, size_t ks, size_t m,
                   double *const *saved, double *panel)
{
#ifdef CG_AVX2_COPIES
    if (cg_has_avx2())
        return rank_update_avx2(c, n_r, a, n_k, coef, rs, ks, m, saved, panel);
#endif
    return rank_update_body(c, n_r, a, n_k, coef, rs, ks, m, saved, panel);
}

const char *cg_kernel_path(int allow_avx2)
{
#ifdef CG_AVX2_COPIES
    if (allow_avx2 >= 0)
        cg_allow_avx2 = allow_avx2;
    return cg_has_avx2() ? "AVX2 (4 doubles a vector)" : "portable C (GCC vectors)";
#else
    (void)allow_avx2;
    return "portable C (GCC vectors)";
#endif
}
