/* Which vector instructions this CPU runs: hot loops are compiled in several copies
 * (baseline, AVX2, AVX-512; with and without FMA for the layer kernels) and choose at
 * run time.  GCC and Clang on x86-64 only; elsewhere the baseline copy runs. */
#ifndef CGRAD_CPU_H
#define CGRAD_CPU_H

/* The layer kernels' copies (layer_kernels.c); the first three are also the widths
 * tests may limit the choice to (cg_vector_limit). */
typedef enum {
    CG_VECTORS_PORTABLE,
    CG_VECTORS_AVX2,
    CG_VECTORS_AVX512,
    CG_VECTORS_AVX2_FMA,
    CG_VECTORS_AVX512_FMA
} cg_vectors;

#if defined(__x86_64__) && defined(__GNUC__)
#define CG_X86_COPIES 1
#define CG_TARGET_AVX2 __attribute__((target("avx2")))
#define CG_TARGET_AVX2_FMA __attribute__((target("avx2,fma")))
#define CG_TARGET_AVX512 __attribute__((target("avx512f,fma")))

/* The widest copies the run may use (CG_VECTORS_AVX512 unless tests lower it to compare
 * the paths: every exact path gives the same bits).  Defined in optim.c, linked into
 * every module using this. */
extern int cg_vector_limit;

static inline int cg_cpu_supports(int avx512)
{
    static int known[2] = {-1, -1};
    if (known[avx512] < 0) {
        __builtin_cpu_init();
        known[avx512] = avx512 ? __builtin_cpu_supports("avx512f") != 0
                               : __builtin_cpu_supports("avx2") != 0;
    }
    return known[avx512];
}

static inline int cg_cpu_has_fma(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("fma") != 0;
    }
    return known;
}

static inline int cg_has_avx2(void)
{
    return cg_vector_limit >= CG_VECTORS_AVX2 && cg_cpu_supports(0);
}

static inline cg_vectors cg_widest_vectors(void)
{
    if (cg_vector_limit >= CG_VECTORS_AVX512 && cg_cpu_supports(1))
        return CG_VECTORS_AVX512;
    return cg_has_avx2() ? CG_VECTORS_AVX2 : CG_VECTORS_PORTABLE;
}
#endif

#endif
