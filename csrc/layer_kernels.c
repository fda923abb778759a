/* Layer kernels: register tiles of 6 rows by 8 columns, built with GCC vector
 * extensions (kernel_body.h, one copy per vector width).  Exact copies (the default):
 * -ffp-contract=off keeps every a * b + c a multiply then an add, and each sum runs in
 * order, so every path (portable, AVX2, AVX-512) gives the bits of the scalar loop.
 * Fast copies (Graph(exact=False)) are the same code with a * b + c fused into one
 * FMA: one rounding instead of two per term, so the last bits differ.  The copy is
 * chosen at run time from the CPU (cpu.h). */
#include "cpu.h"
#include "layer_kernels.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

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

/* Terms offset..offset+n of `cols` rows (at most PANEL) into a panel's columns; the
 * columns past them hold zeros (a last, partial panel: their sums are not stored). */
ALWAYS_INLINE void pack_columns(double *panel, const double *const *rows, size_t cols,
                                size_t offset, size_t n)
{
    for (size_t e = 0; e < PANEL; e++) {
        const double *r = e < cols ? rows[e] + offset : NULL;
        for (size_t i = 0; i < n; i++)
            panel[i * PANEL + e] = r ? r[i] : 0.0;
    }
}

/* ---- the copies ---------------------------------------------------------------------- */

#define KERNEL(name) name##_w2              /* 2 doubles a vector: portable (SSE2, NEON) */
#define KERNEL_LANES 2
#include "kernel_body.h"
#undef KERNEL
#undef KERNEL_LANES

#define KERNEL(name) name##_w4              /* 4 doubles a vector: AVX2 */
#define KERNEL_LANES 4
#include "kernel_body.h"
#undef KERNEL
#undef KERNEL_LANES

#ifdef CG_X86_COPIES
#define KERNEL(name) name##_w8              /* 8 doubles a vector: AVX-512 */
#define KERNEL_LANES 8
#include "kernel_body.h"
#undef KERNEL
#undef KERNEL_LANES
#endif

/* A copy's two kernels behind one name, compiled for one target. */
#define KERNEL_COPY(copy, width, target)                                              \
    target static int dot_tiles_##copy(const double *const *w, size_t K,              \
                                       const double *bias, const double *const *x,    \
                                       size_t B, size_t m, double *out, double *panel) \
    {                                                                                 \
        return dot_tiles_##width(w, K, bias, x, B, m, out, panel);                    \
    }                                                                                 \
    target static int rank_update_##copy(double *const *c, size_t n_r,                \
                                         const double *const *a, size_t n_k,          \
                                         const double *coef, size_t rs, size_t ks,    \
                                         size_t m, double *const *saved, double *panel) \
    {                                                                                 \
        return rank_update_##width(c, n_r, a, n_k, coef, rs, ks, m, saved, panel);    \
    }

KERNEL_COPY(portable, w2, )
#ifdef CG_X86_COPIES
KERNEL_COPY(avx2, w4, CG_TARGET_AVX2)
KERNEL_COPY(avx512, w8, CG_TARGET_AVX512)
#endif

/* exact=False: the same code with a * b + c contracted into FMAs.  GCC only: Clang
 * decides contraction where an expression is written (its builds run the exact copies
 * for exact=False too). */
#if defined(CG_X86_COPIES) && !defined(__clang__)
#define CG_FMA_COPIES 1
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
KERNEL_COPY(avx2_fma, w4, CG_TARGET_AVX2_FMA)
KERNEL_COPY(avx512_fma, w8, CG_TARGET_AVX512)
#pragma GCC pop_options
#endif

typedef int (*dot_tiles_fn)(const double *const *, size_t, const double *,
                            const double *const *, size_t, size_t, double *, double *);
typedef int (*rank_update_fn)(double *const *, size_t, const double *const *, size_t,
                              const double *, size_t, size_t, size_t, double *const *,
                              double *);

static const struct {
    dot_tiles_fn dot;
    rank_update_fn rank;
    const char *name;
} COPIES[] = {
    [CG_VECTORS_PORTABLE] = {dot_tiles_portable, rank_update_portable,
                             "portable C (GCC vectors)"},
#ifdef CG_X86_COPIES
    [CG_VECTORS_AVX2] = {dot_tiles_avx2, rank_update_avx2, "AVX2 (4 doubles a vector)"},
    [CG_VECTORS_AVX512] = {dot_tiles_avx512, rank_update_avx512,
                           "AVX-512 (8 doubles a vector)"},
#endif
#ifdef CG_FMA_COPIES
    [CG_VECTORS_AVX2_FMA] = {dot_tiles_avx2_fma, rank_update_avx2_fma,
                             "AVX2 with FMA (exact=False)"},
    [CG_VECTORS_AVX512_FMA] = {dot_tiles_avx512_fma, rank_update_avx512_fma,
                               "AVX-512 with FMA (exact=False)"},
#endif
};

/* The copy exact (or fast) kernels run on this CPU, within what tests allow. */
static cg_vectors copy_for(int exact)
{
#ifdef CG_X86_COPIES
    cg_vectors widest = cg_widest_vectors();
#ifdef CG_FMA_COPIES
    if (!exact && cg_cpu_has_fma()) {
        if (widest == CG_VECTORS_AVX512)
            return CG_VECTORS_AVX512_FMA;
        if (widest == CG_VECTORS_AVX2)
            return CG_VECTORS_AVX2_FMA;
    }
#else
    (void)exact;
#endif
    return widest;
#else
    (void)exact;
    return CG_VECTORS_PORTABLE;
#endif
}

int cg_dot_tiles(int exact, const double *const *w, size_t K, const double *bias,
                 const double *const *x, size_t B, size_t m, double *out, double *panel)
{
    return COPIES[copy_for(exact)].dot(w, K, bias, x, B, m, out, panel);
}

int cg_rank_update(int exact, double *const *c, size_t n_r, const double *const *a,
                   size_t n_k, const double *coef, size_t rs, size_t ks, size_t m,
                   double *const *saved, double *panel)
{
    return COPIES[copy_for(exact)].rank(c, n_r, a, n_k, coef, rs, ks, m, saved, panel);
}

const char *cg_kernel_path(int exact)
{
    return COPIES[copy_for(exact)].name;
}
