/* A layer call's dot nodes computed together in the eager build (cgrad.h). */
#include "cgrad.h"
#include "node_ops.h"

cg_status cg_eval_row_dots(cg_node **dots, size_t n, size_t *failed)
{
    enum { SIDE = CG_SIDE_BY_SIDE };
    for (size_t d0 = 0; d0 < n; d0 += SIDE) {
        size_t count = n - d0 < SIDE ? n - d0 : SIDE;
        double spare_w[SIDE][2], spare_x[2], s[SIDE];
        const double *w[SIDE];
        cg_node *x_row = cg_kids(dots[d0])[1];
        uint32_t m = x_row->n_kids;
        int together = 1;
        for (size_t d = 0; d < count; d++)
            together &= cg_kids(dots[d0 + d])[1] == x_row;
        if (!together) {  /* not one input row: one at a time */
            for (size_t d = 0; d < count; d++) {
                cg_status st = cg_eval_row_dot(dots[d0 + d]);
                if (st != CG_OK) {
                    *failed = d0 + d;
                    return st;
                }
            }
            continue;
        }
        const double *x = cg_row_values(x_row, spare_x);
        for (size_t d = 0; d < SIDE; d++) {  /* spare lanes redo the first dot */
            cg_node *dot = dots[d0 + (d < count ? d : 0)];
            w[d] = cg_row_values(cg_kids(dot)[0], spare_w[d]);
            s[d] = (dot->flags & CG_FLAG_HAS_BIAS) ? w[d][m] : 0.0;
        }
        cg_dot_values_side_by_side(w, x, m, s);
        for (size_t d = 0; d < count; d++) {
            dots[d0 + d]->data = s[d];
            if (!isfinite(s[d])) {  /* overflow, or non-finite inputs: as one at a time */
                cg_status st = cg_eval_row_dot(dots[d0 + d]);
                if (st != CG_OK) {
                    *failed = d0 + d;
                    return st;
                }
            }
        }
    }
    return CG_OK;
}
