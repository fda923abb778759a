/* One copy of the layer kernels, included by layer_kernels.c once per vector width:
 * KERNEL_LANES doubles a vector (4 or 8), KERNEL(name) the copy's names.  Whether
 * a * b + c is one multiply then one add (exact: the bits of the scalar loop) or one
 * fused multiply-add (exact=False) is the including file's compile option for the
 * functions that call these.
 *
 * Register tiles of TILE_ROWS rows by PANEL columns: each row's PANEL sums in
 * PANEL / KERNEL_LANES vectors. */

#define VEC KERNEL(vec)
#define VEC_U KERNEL(vec_unaligned)
#define VECS (PANEL / KERNEL_LANES)     /* vectors holding a tile row's sums */

typedef double VEC __attribute__((vector_size(8 * KERNEL_LANES)));
typedef double VEC_U __attribute__((vector_size(8 * KERNEL_LANES), aligned(8)));

/* Macros, not functions: a function taking or returning a vector has a different ABI
 * with and without AVX. */
#define vload(p) (*(const VEC_U *)(p))
#define vstore(p, v) (*(VEC_U *)(p) = (v))
/* x - (+0.0) is x for every x, -0.0 included: a broadcast */
#define vsplat(x) ((x) - (VEC){0.0})
/* The first n of KERNEL_LANES sums cs apart (cs == 1: side by side); lanes past n
 * load as 0 and are not stored (a partial panel's missing columns) */
#define vload_cols(p, cs, n)                                                          \
    __extension__({                                                                   \
        VEC v_ = {0.0};                                                               \
        if ((cs) == 1 && (n) == KERNEL_LANES)                                         \
            v_ = vload(p);                                                            \
        else                                                                          \
            for (int l_ = 0; l_ < (n); l_++)                                          \
                v_[l_] = (p)[l_ * (cs)];                                              \
        v_;                                                                           \
    })
#define vstore_cols(p, cs, n, v)                                                      \
    do {                                                                              \
        if ((cs) == 1 && (n) == KERNEL_LANES)                                         \
            vstore(p, v);                                                             \
        else                                                                          \
            for (int l_ = 0; l_ < (n); l_++)                                          \
                (p)[l_ * (cs)] = (v)[l_];                                             \
    } while (0)

/* How many of vector c's lanes are among a tile row's first `cols` sums. */
#define LANES_IN(c, cols)                                                             \
    ((int)(cols) - (c) * KERNEL_LANES >= KERNEL_LANES ? KERNEL_LANES                  \
     : (int)(cols) - (c) * KERNEL_LANES > 0 ? (int)(cols) - (c) * KERNEL_LANES : 0)

/* The micro-kernel both products share: R rows of `cols` sums (PANEL, or fewer in a
 * last, partial panel; row r's sums at dst[r], dcs apart), each advanced by n terms, term
 * k of row r being src[r][k * ks] times column k of the packed panel.  R is a constant at
 * every call, so the accumulators live in registers.  save (rows or NULL) receives the
 * sums' values before the tile adds to them; bad (or NULL) gathers x - x of the results,
 * NaN once any is inf or NaN. */
ALWAYS_INLINE void KERNEL(tile)(int R, double *const *dst, size_t dcs, size_t cols,
                                const double *const *src, size_t ks, const double *panel,
                                size_t n, double *const *save, VEC *bad)
{
    VEC acc[TILE_ROWS][VECS];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < VECS; c++) {
            acc[r][c] = vload_cols(dst[r] + c * KERNEL_LANES * dcs, dcs, LANES_IN(c, cols));
            if (save)
                vstore_cols(save[r] + c * KERNEL_LANES, 1, LANES_IN(c, cols), acc[r][c]);
        }
    for (size_t k = 0; k < n; k++) {
        VEC x[VECS];
        for (int c = 0; c < VECS; c++)
            x[c] = vload(panel + k * PANEL + c * KERNEL_LANES);
        for (int r = 0; r < R; r++) {
            VEC s = vsplat(src[r][k * ks]);
            for (int c = 0; c < VECS; c++)
                acc[r][c] = acc[r][c] + s * x[c];
        }
    }
    for (int r = 0; r < R; r++)
        for (int c = 0; c < VECS; c++) {
            vstore_cols(dst[r] + c * KERNEL_LANES * dcs, dcs, LANES_IN(c, cols), acc[r][c]);
            if (bad)   /* a missing column's sum is 0 * finite terms: 0, or NaN only where
                        * a stored sum is not finite too */
                *bad = *bad + (acc[r][c] - acc[r][c]);
        }
}

/* Rows 0..n_rows of a product in tiles of TILE_ROWS, then 4, then 1.  DST(r), SRC(r)
 * and SAVE(r) give row r's sums, its coefficients and where its sums are saved. */
#define TILE_ROWS_OF(R, r0, dcs, cols, ks, panel, n, DST, SRC, SAVE, save_on, bad)    \
    do {                                                                              \
        double *d_[R], *v_[R];                                                        \
        const double *s_[R];                                                          \
        for (int r_ = 0; r_ < (R); r_++) {                                            \
            d_[r_] = DST((r0) + r_);                                                  \
            s_[r_] = SRC((r0) + r_);                                                  \
            v_[r_] = (save_on) ? SAVE((r0) + r_) : NULL;                              \
        }                                                                             \
        KERNEL(tile)(R, d_, dcs, cols, s_, ks, panel, n, (save_on) ? v_ : NULL, bad); \
    } while (0)

#define FOR_EACH_TILE(n_rows, dcs, cols, ks, panel, n, DST, SRC, SAVE, save_on, bad)   \
    do {                                                                              \
        size_t r0 = 0;                                                                \
        for (; r0 + TILE_ROWS <= (n_rows); r0 += TILE_ROWS)                           \
            TILE_ROWS_OF(TILE_ROWS, r0, dcs, cols, ks, panel, n, DST, SRC, SAVE, save_on, \
                         bad);                                                        \
        for (; r0 + 4 <= (n_rows); r0 += 4)                                           \
            TILE_ROWS_OF(4, r0, dcs, cols, ks, panel, n, DST, SRC, SAVE, save_on, bad); \
        for (; r0 < (n_rows); r0++)                                                   \
            TILE_ROWS_OF(1, r0, dcs, cols, ks, panel, n, DST, SRC, SAVE, save_on, bad); \
    } while (0)

#define all_zero(bad)                                                                 \
    __extension__({                                                                   \
        int z_ = 1;                                                                   \
        for (int l_ = 0; l_ < KERNEL_LANES; l_++)                                     \
            z_ &= (bad)[l_] == 0.0;                                                   \
        z_;                                                                           \
    })

ALWAYS_INLINE int KERNEL(dot_tiles)(const double *const *w, size_t K, const double *bias,
                                    const double *const *x, size_t B, size_t m,
                                    double *out, double *panel)
{
    VEC bad = {0.0};
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < K; j++)
            out[b * K + j] = bias ? bias[j] : 0.0;
    for (size_t i0 = 0; i0 < m || i0 == 0; i0 += CHUNK) {
        size_t n = i0 + CHUNK < m ? CHUNK : m - i0;
        int last = i0 + CHUNK >= m;
        for (size_t b0 = 0; b0 < B; b0 += PANEL) {   /* the last panel may be partial */
            size_t cols = B - b0 < PANEL ? B - b0 : PANEL;
            pack_columns(panel, x + b0, cols, i0, n);
#define OUT_ROW(j) (out + b0 * K + (j))
#define WEIGHTS(j) (w[j] + i0)
#define NO_SAVE(j) ((double *)NULL)
            FOR_EACH_TILE(K, K, cols, 1, panel, n, OUT_ROW, WEIGHTS, NO_SAVE, 0,
                          last ? &bad : NULL);
#undef OUT_ROW
#undef WEIGHTS
#undef NO_SAVE
        }
        if (last)
            break;
    }
    return all_zero(bad);
}

/* One chunk of n_k rows of a (at most CHUNK), coefficient k of row r at
 * coef[r * rs + k * ks]; saves c first (saved != NULL), checks the results (bad). */
ALWAYS_INLINE void KERNEL(rank_update_chunk)(double *const *c, size_t n_r,
                                             const double *const *a, size_t n_k,
                                             const double *coef, size_t rs, size_t ks,
                                             size_t m, double *const *saved, VEC *bad,
                                             double *panel)
{
    for (size_t i0 = 0; i0 < m; i0 += PANEL) {   /* the last panel may be partial */
        size_t cols = m - i0 < PANEL ? m - i0 : PANEL;
        if (cols == PANEL)
            for (size_t k = 0; k < n_k; k++)
                for (int v = 0; v < VECS; v++)
                    vstore(panel + k * PANEL + v * KERNEL_LANES,
                           vload(a[k] + i0 + v * KERNEL_LANES));
        else
            for (size_t k = 0; k < n_k; k++)
                for (size_t e = 0; e < PANEL; e++)
                    panel[k * PANEL + e] = e < cols ? a[k][i0 + e] : 0.0;
#define SUMS(r) (c[r] + i0)
#define COEFS(r) (coef + (r) * rs)
#define SAVED(r) (saved[r] + i0)
        FOR_EACH_TILE(n_r, 1, cols, ks, panel, n_k, SUMS, COEFS, SAVED, saved != NULL, bad);
#undef SUMS
#undef COEFS
#undef SAVED
    }
}

/* The terms in chunks: a chunk's rows of a, packed, stay near while the tiles of c pass
 * over them; c carries each sum from one chunk to the next.  c is saved while the first
 * chunk loads it and checked while the last stores it. */
ALWAYS_INLINE int KERNEL(rank_update)(double *const *c, size_t n_r, const double *const *a,
                                      size_t n_k, const double *coef, size_t rs, size_t ks,
                                      size_t m, double *const *saved, double *panel)
{
    VEC bad = {0.0};
    for (size_t k0 = 0; k0 < n_k || k0 == 0; k0 += CHUNK) {
        size_t n = k0 + CHUNK < n_k ? CHUNK : n_k - k0;
        int last = k0 + CHUNK >= n_k;
        KERNEL(rank_update_chunk)(c, n_r, a + k0, n, coef + k0 * ks, rs, ks, m,
                                  k0 == 0 ? saved : NULL, last ? &bad : NULL, panel);
        if (last)
            break;
    }
    return all_zero(bad);
}

#undef VEC
#undef VEC_U
#undef VECS
#undef vload
#undef vstore
#undef vsplat
#undef vload_cols
#undef vstore_cols
#undef TILE_ROWS_OF
#undef FOR_EACH_TILE
#undef all_zero
#undef LANES_IN
