/* Matrix-matrix kernels for replaying a layer over a batch.  Every output element is
 * one sum taken in a fixed order, element after element; with `exact`, no fused
 * multiply-add: bit for bit the scalar loop it replaces (without, each term is one FMA
 * where the CPU has it).  Tiles only decide which sums advance together (side by side
 * in vector registers), never the order within one. */
#ifndef CGRAD_LAYER_KERNELS_H
#define CGRAD_LAYER_KERNELS_H

#include <stddef.h>

/* The kernels' work buffer (`panel`): CG_KERNEL_PANEL doubles. */
enum { CG_KERNEL_CHUNK = 1024, CG_KERNEL_PANEL = CG_KERNEL_CHUNK * 8 };

/* Sets how many terms a chunk has (1..CG_KERNEL_CHUNK; tests make it small so that
 * sums cross chunks); returns the previous value. */
size_t cg_set_kernel_chunk(size_t terms);

/* out[b * K + j] = bias[j] + w[j][0] * x[b][0] + w[j][1] * x[b][1] + ... over m terms,
 * summed left to right (bias NULL: from 0.0).  1 if every result is finite. */
int cg_dot_tiles(int exact, const double *const *w, size_t K, const double *bias,
                 const double *const *x, size_t B, size_t m, double *out, double *panel);

/* c[r][i] = (((c[r][i] + a[0][i] * g(r, 0)) + a[1][i] * g(r, 1)) + ...) over k < n_k, for
 * r < n_r and i < m, where g(r, k) = coef[r * rs + k * ks].  saved (or NULL): rows that
 * receive c's values before the update.  1 if every result is finite. */
int cg_rank_update(int exact, double *const *c, size_t n_r, const double *const *a,
                   size_t n_k, const double *coef, size_t rs, size_t ks, size_t m,
                   double *const *saved, double *panel);

/* For tests (plan_parts.c): the fewest multiply-adds a kernel part gets with threads=N
 * (default 1.5M; smaller kernels are not split); returns the previous setting. */
size_t cg_set_work_per_part(size_t work);

/* The copy the kernels run on here, exact or not (e.g. "AVX2 (4 doubles a vector)"). */
const char *cg_kernel_path(int exact);

#endif
