/* Matrix-matrix kernels for replaying a layer over a batch.  Every output element is
 * one sum taken in a fixed order, element after element, with no fused multiply-add:
 * bit for bit the scalar loop it replaces.  Tiles only decide which sums advance
 * together (side by side in vector registers), never the order within one. */
#ifndef CGRAD_LAYER_KERNELS_H
#define CGRAD_LAYER_KERNELS_H

#include <stddef.h>

/* out[j * B + b] = bias[j] + w[j][0] * x[b][0] + w[j][1] * x[b][1] + ... over m terms,
 * summed left to right (bias NULL: from 0.0). */
void cg_dot_tiles(const double *const *w, size_t K, const double *bias,
                  const double *const *x, size_t B, size_t m, double *out);

/* c[r][i] = (((c[r][i] + a[0][i] * coef[r * n_k]) + a[1][i] * coef[r * n_k + 1]) + ...)
 * over k < n_k, for r < n_r and i < m. */
void cg_rank_update(double *const *c, size_t n_r, const double *const *a, size_t n_k,
                    const double *coef, size_t m);

#endif
