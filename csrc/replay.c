/* Replay: forward and backward over a recorded order of nodes, for new input data. */
#include "cgrad.h"
#include "ops.h"

void cg_load(cg_node **leaves, const double *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        leaves[i]->data = data[i];
        leaves[i]->grad = 0.0;
    }
}

void cg_gather(cg_node **nodes, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = nodes[i]->data;
}

cg_status cg_forward_all(cg_node **nodes, size_t n, cg_node **failed)
{
    for (size_t i = 0; i < n; i++) {
        cg_status st = cg_eval_inline(nodes[i]);
        if (st != CG_OK) {
            *failed = nodes[i];
            return st;
        }
    }
    return CG_OK;
}

cg_status cg_backward_all(cg_node **nodes, size_t n, cg_node **failed)
{
    for (size_t i = 0; i < n; i++)
        nodes[i]->grad = 0.0;
    nodes[n - 1]->grad = 1.0;
    return cg_sweep(nodes, n, failed);
}
