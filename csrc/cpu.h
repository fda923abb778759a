/* Which vector instructions this CPU runs: hot loops are compiled twice (for AVX2 and
 * for the baseline) and choose at run time.  GCC and Clang on x86-64 only; elsewhere the
 * baseline copy runs. */
#ifndef CGRAD_CPU_H
#define CGRAD_CPU_H

#if defined(__x86_64__) && defined(__GNUC__)
#define CG_AVX2_COPIES 1
#define CG_TARGET_AVX2 __attribute__((target("avx2")))

/* Set to 0 to run the baseline copies on a CPU that has AVX2 (tests compare the paths;
 * the bits are the same).  Defined in optim.c, linked into every module using this. */
extern int cg_allow_avx2;

static inline int cg_cpu_has_avx2(void)
{
    static int known = -1;
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx2") != 0;
    }
    return known;
}

static inline int cg_has_avx2(void)
{
    return cg_allow_avx2 && cg_cpu_has_avx2();
}
#endif

#endif
