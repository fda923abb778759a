/* Ops on nodes: the eager path.  A node's value from its kids' (cg_eval_inline) and
 * its chain rule into their grads (cg_backward_inline), through op_math.h's kernels;
 * the graph state they need (the data epoch rows check their copies against, the
 * Python-backward hook) is declared in cgrad.h and lives in graph.c. */
#ifndef CGRAD_NODE_OPS_H
#define CGRAD_NODE_OPS_H

#include <stdlib.h>
#include "cgrad.h"
#include "op_math.h"

/* ---- on nodes: the eager path -------------------------------------------------------- */

/* A row's items' data: its cached copy, refreshed if the epoch moved since it was taken
 * (rows of up to two items: gathered into `spare`). */
static inline const double *cg_row_values(cg_node *row, double spare[2])
{
    uint32_t n = row->n_kids;
    cg_node **items = cg_kids(row);
    if (n <= 2) {
        for (uint32_t i = 0; i < n; i++)
            spare[i] = items[i]->data;
        return spare;
    }
    double *copy = (double *)(void *)(items + n);
    if (row->kids.ext.arg != (double)cg_data_epoch + 1.0) {
        for (uint32_t i = 0; i < n; i++)
            copy[i] = items[i]->data;
        row->kids.ext.arg = (double)cg_data_epoch + 1.0;
    }
    return copy;
}

/* A dot over rows: the rows' copies of their data, no gathering per neuron. */
static inline cg_status cg_eval_row_dot(cg_node *n)
{
    double spare_w[2], spare_x[2];
    cg_node **k = cg_kids(n);
    const double *w = cg_row_values(k[0], spare_w), *x = cg_row_values(k[1], spare_x);
    uint32_t m = k[1]->n_kids;
    return cg_dot_values(w, x, m, (n->flags & CG_FLAG_HAS_BIAS) ? w[m] : 0.0, &n->data);
}

static inline cg_status cg_eval_nary(cg_node *n)
{
    if (n->op == CG_DOT && (n->flags & CG_FLAG_ROWS))
        return cg_eval_row_dot(n);
    cg_node **k = cg_kids(n);
    int is_dot = n->op == CG_DOT;
    cg_dot_parts d = is_dot ? cg_dot_of(n) : (cg_dot_parts){k, k, NULL, n->n_kids};
    uint32_t count = is_dot ? 2 * d.m : n->n_kids;
    double stack[64], *v = stack;
    cg_status st;
    if (count > 64 && !(v = malloc(count * sizeof *v)))
        return CG_ERR_NOMEM;
    if (is_dot) {
        for (uint32_t i = 0; i < d.m; i++) {
            v[i] = d.w[i]->data;
            v[d.m + i] = d.x[i]->data;
        }
        st = cg_dot_values(v, v + d.m, d.m, d.bias ? d.bias->data : 0.0, &n->data);
    } else {
        for (uint32_t i = 0; i < count; i++)
            v[i] = k[i]->data;
        st = n->op == CG_SUM ? cg_sum_values(v, count, &n->data)
                             : cg_logsumexp_values(v, count, &n->data);
    }
    if (v != stack)
        free(v);
    return st;
}

static inline cg_status cg_eval_inline(cg_node *n)
{
    cg_node **k = cg_kids(n);
    if (CG_OP_INFO[n->op].flags & (CG_OPF_NO_MATH | CG_OPF_GIVEN_DATA))
        return CG_OK;   /* leaf, opaque, row, local */
    if (cg_is_nary(n->op))
        return cg_eval_nary(n);
    return cg_forward_scalar(n->op, n->kids.ext.arg, k[0]->data,
                             cg_is_binary(n->op) ? k[1]->data : 0.0, &n->data);
}

/* Whether a non-finite contribution d to kid is an error: not when kid is a constant
 * (nobody reads its gradient). */
static inline int cg_bad_contribution(const cg_node *kid, double d)
{
    return !isfinite(d) && !(kid->flags & CG_FLAG_CONSTANT);
}

/* kid->grad += d, reporting a non-finite contribution that matters. */
static inline int cg_accumulate(cg_node *kid, double d)
{
    kid->grad += d;
    return cg_bad_contribution(kid, d);
}

/* cg_kid_access over lists of nodes */
static inline double node_value(void *ctx, const void *list, uint32_t i)
{
    (void)ctx;
    return ((cg_node *const *)list)[i]->data;
}

static inline int node_add(void *ctx, const void *list, uint32_t i, double d)
{
    (void)ctx;
    return cg_accumulate(((cg_node *const *)list)[i], d);
}

#if defined(__GNUC__)
#define CG_NOINLINE __attribute__((noinline))
#else
#define CG_NOINLINE
#endif

/* Whether n's data and its kids' data are all finite.  A non-finite gradient
 * contribution is an overflow only then: inf or NaN in the data passes through backward
 * as it passes through forward.  Called on the error path only. */
static CG_NOINLINE int cg_data_finite(cg_node *n)
{
    cg_node **k = cg_kids(n);
    if (!isfinite(n->data))
        return 0;
    if (n->op == CG_DOT) {
        cg_dot_parts d = cg_dot_of(n);
        for (uint32_t i = 0; i < d.m; i++)
            if (!isfinite(d.w[i]->data) || !isfinite(d.x[i]->data))
                return 0;
        return !d.bias || isfinite(d.bias->data);
    }
    for (uint32_t i = 0; i < n->n_kids; i++)
        if (!isfinite(k[i]->data) || (n->op == CG_LOCAL && !isfinite(cg_local_grads(n)[i])))
            return 0;
    return 1;
}

/* Every op but + and *: kept out of line so that the sweep's loop stays small. */
static CG_NOINLINE cg_status cg_backward_other(cg_node *n)
{
    cg_node **k = cg_kids(n);
    double g = n->grad, da, db;
    int bad = 0;
    cg_status st;
    if (n->op & CG_OP_PYTHON_BACKWARD)
        return cg_python_backward(n);
    switch (n->op) {
    case CG_LEAF:
    case CG_OPAQUE:
    case CG_ROW:
        return CG_OK;
    case CG_SUM:
    case CG_LOGSUMEXP:
    case CG_LOCAL:
    case CG_DOT: {
        cg_dot_parts d = n->op == CG_DOT ? cg_dot_of(n) : (cg_dot_parts){NULL, NULL, NULL, 0};
        cg_nary_kids kids = {k, d.w, d.x, d.bias ? &d.bias : NULL, n->n_kids, d.m};
        const double *local = n->op == CG_LOCAL ? cg_local_grads(n) : NULL;
        bad = cg_nary_backward(n->op, &kids, n->data, g, local,
                               (cg_kid_access){NULL, node_value, node_add});
        break;
    }
    default: {
        int binary = cg_is_binary(n->op);
        st = cg_backward_scalar(n->op, n->kids.ext.arg, k[0]->data, binary ? k[1]->data : 0.0,
                                n->data, g, &da, &db);
        if (st != CG_OK)
            return st;
        bad |= cg_accumulate(k[0], da);
        if (binary)
            bad |= cg_accumulate(k[1], db);
    }
    }
    return (bad && isfinite(g) && cg_data_finite(n)) ? CG_ERR_OVERFLOW : CG_OK;
}

/* One node's chain rule: its grad times each local derivative, added to its kids. */
static inline cg_status cg_backward_inline(cg_node *n)
{
    if (n->op == CG_ADD || n->op == CG_MUL) {
        cg_node *a = n->kids.pair[0], *b = n->kids.pair[1];
        double g = n->grad, da, db;
        cg_add_mul_partials(n->op == CG_MUL, a->data, b->data, g, &da, &db);
        a->grad += da;
        b->grad += db;
        return (!(isfinite(da) && isfinite(db))
                && (cg_bad_contribution(a, da) || cg_bad_contribution(b, db))
                && isfinite(g) && cg_data_finite(n)) ? CG_ERR_OVERFLOW : CG_OK;
    }
    return cg_backward_other(n);
}

#endif
