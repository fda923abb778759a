/* The math of every op, written once: forward value and local derivatives.
 *
 * The kernels work on plain values (scalar ops) or arrays of values (n-ary ops), so
 * that the eager path (cg_eval_inline / cg_backward_inline, over nodes) and replay
 * (replay.c, over a packed array of slots) compute with the very same code.
 *
 * Each formula follows micrograd's Python expression operation for operation (and
 * Python's float ** is C pow), so with -ffp-contract=off the results are bit for bit
 * those of micrograd on the same graph. */
#ifndef CGRAD_OPS_H
#define CGRAD_OPS_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cgrad.h"

/* A finite input that gives a non-finite result is an overflow; a non-finite input
 * passes through, as it does in Python. */
static inline cg_status cg_check_finite(double out, double a, double b)
{
    if (isfinite(out) || !isfinite(a) || !isfinite(b))
        return CG_OK;
    return CG_ERR_OVERFLOW;
}

/* d ** -1 computed by pow() at run time, as Python's float ** does: a compiler folds
 * pow(d, -1.0) into 1.0 / d, which rounds differently for some d (0.998, say). */
static inline double cg_reciprocal(double d)
{
    volatile double minus_one = -1.0;
    return pow(d, minus_one);
}

static inline double cg_sigmoid(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static inline int cg_is_binary(uint8_t op)
{
    return CG_OP_INFO[op].min_kids == 2 && CG_OP_INFO[op].max_kids == 2;
}

static inline int cg_is_nary(uint8_t op)
{
    return op == CG_SUM || op == CG_DOT || op == CG_LOGSUMEXP;
}

/* ---- helpers the table's formulas use ------------------------------------------------ */

/* micrograd's `0 if a < 0 else a` (+0.0 below zero; -0.0 and NaN pass), without a branch:
 * a layer's ReLUs are on or off at random, and the branch mispredicted half the time. */
static inline double cg_relu(double a)
{
    uint64_t bits;
    memcpy(&bits, &a, sizeof bits);
    bits &= -(uint64_t)!(a < 0.0);
    memcpy(&a, &bits, sizeof a);
    return a;
}

/* 1, -1, or a itself (0.0, -0.0, NaN) */
static inline double cg_sign(double a)
{
    return a > 0.0 ? 1.0 : (a < 0.0 ? -1.0 : a);
}

/* log's backward: micrograd's (1/a) * g, and g / a where 1/a overflows (a subnormal) */
static inline double cg_log_backward(double a, double g)
{
    double inverse = 1.0 / a;
    return isfinite(inverse) ? inverse * g : g / a;
}

/* d/da of GELU's tanh form, as PyTorch computes it (and ops.def's recipe writes it) */
static inline double cg_gelu_tanh_derivative(double a)
{
    const double beta = 0.7978845608028654, kappa = 0.044715;
    double t = tanh(beta * (a + kappa * (a * a * a)));
    return 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * (beta * (1.0 + 3.0 * kappa * (a * a)));
}

/* ---- scalar ops: a (and b for binary ops) in, *out written ---------------------------- */

static inline cg_status cg_forward_scalar(uint8_t op, double arg, double a, double b,
                                          double *out)
{
    cg_status st;
    switch (op) {
    case CG_ADD:
        *out = a + b;
        return cg_check_finite(*out, a, b);
    case CG_MUL:
        *out = a * b;
        return cg_check_finite(*out, a, b);
    case CG_POW:
    case CG_POWV:
        if (op == CG_POW)
            b = arg;
        if (a == 0.0 && b < 0.0)
            return CG_ERR_ZERODIV;
        if (a < 0.0 && (op == CG_POWV || b != floor(b)))
            return CG_ERR_DOMAIN;
        *out = pow(a, b);
        return cg_check_finite(*out, a, b);
    case CG_MAX:        /* Python's max(a, b): the first unless the second is larger */
        *out = b > a ? b : a;
        return CG_OK;
    case CG_MIN:
        *out = b < a ? b : a;
        return CG_OK;
#define CG_UNARY(NAME, key, symbol, flags, domain, forward, backward, py_forward, derivative) \
    case CG_##NAME:                                                                         \
        (void)arg;                                                                          \
        if ((st = (domain)) != CG_OK)                                                        \
            return st;                                                                      \
        *out = (forward);                                                                   \
        return ((flags) & CG_OPF_CANNOT_FAIL) ? CG_OK : cg_check_finite(*out, a, 0.0);
#include "ops.def"
    default:
        return CG_OK;
    }
}

/* The contributions of a + b (mul = 0) and a * b (mul = 1) without a branch on the
 * op: the local derivatives of + are 1.0, and 1.0 * g == g exactly. */
static inline void cg_add_mul_partials(int mul, double a, double b, double g,
                                       double *da, double *db)
{
    *da = (mul ? b : 1.0) * g;
    *db = (mul ? a : 1.0) * g;
}

/* The contributions g * d(out)/da and g * d(out)/db. */
static inline cg_status cg_backward_scalar(uint8_t op, double arg, double a, double b,
                                           double out, double g, double *da, double *db)
{
    *da = *db = 0.0;
    switch (op) {
    case CG_ADD:
    case CG_MUL:
        cg_add_mul_partials(op == CG_MUL, a, b, g, da, db);
        break;
    case CG_POW:
    case CG_POWV:
        if (op == CG_POW)
            b = arg;
        if (a == 0.0 && b - 1.0 < 0.0)
            return CG_ERR_ZERODIV;
        *da = (b * pow(a, b - 1.0)) * g;
        /* d(a**b)/db = a**b * log(a), taken as 0 at a == 0 as PyTorch does */
        if (op == CG_POWV)
            *db = a == 0.0 ? 0.0 : (out * log(a)) * g;
        break;
    case CG_MAX:   /* the gradient goes where the value came from (the first at a tie) */
        *da = (b > a ? 0.0 : 1.0) * g;
        *db = (b > a ? 1.0 : 0.0) * g;
        break;
    case CG_MIN:
        *da = (b < a ? 0.0 : 1.0) * g;
        *db = (b < a ? 1.0 : 0.0) * g;
        break;
#define CG_UNARY(NAME, key, symbol, flags, domain, forward, backward, py_forward, derivative) \
    case CG_##NAME:                                                                         \
        (void)arg;                                                                          \
        *da = (backward);                                                                   \
        break;
#include "ops.def"
    default:
        break;
    }
    return CG_OK;
}

/* ---- n-ary ops over arrays of values --------------------------------------------------- */

/* ((0 + v0) + v1) + ...: Python's sum() order. */
static inline cg_status cg_sum_values(const double *v, size_t n, double *out)
{
    double s = 0.0;
    int finite_in = 1;
    for (size_t i = 0; i < n; i++) {
        s = s + v[i];
        finite_in &= isfinite(v[i]);
    }
    *out = s;
    return (isfinite(s) || !finite_in) ? CG_OK : CG_ERR_OVERFLOW;
}

/* ((bias + w0*x0) + w1*x1) + ...: micrograd's sum((wi*xi ...), b) order.
 * Backward: d/dw_i = x_i, d/dx_i = w_i, d/dbias = 1. */
static inline cg_status cg_dot_values(const double *w, const double *x, size_t m,
                                      double bias, double *out)
{
    double s = bias;
    int finite_in = isfinite(bias);
    for (size_t i = 0; i < m; i++) {
        s = s + w[i] * x[i];
        finite_in &= isfinite(w[i]) & isfinite(x[i]);
    }
    *out = s;
    return (isfinite(s) || !finite_in) ? CG_OK : CG_ERR_OVERFLOW;
}

/* CG_SIDE_BY_SIDE dots over one input row x, advanced together: s[d] (its bias on entry)
 * becomes ((s[d] + w[d][0] * x[0]) + w[d][1] * x[1]) + ..., each sum in cg_dot_values'
 * order, so the same bits; one dot alone waits on the latency of its chain of adds. */
enum { CG_SIDE_BY_SIDE = 4 };

static inline void cg_dot_values_side_by_side(const double *const *w, const double *x,
                                              size_t m, double *s)
{
    for (size_t i = 0; i < m; i++) {
        double xi = x[i];
        s[0] = s[0] + w[0][i] * xi;
        s[1] = s[1] + w[1][i] * xi;
        s[2] = s[2] + w[2][i] * xi;
        s[3] = s[3] + w[3][i] * xi;
    }
}

/* max + log1p(the sum of exp(v - max) over every value but the first maximum): no
 * overflow, and log1p keeps the small terms that log(1 + s) would round away.  NaN in,
 * NaN out.  Backward: d/dv_i = cg_logsumexp_partial(v_i, out). */
static inline cg_status cg_logsumexp_values(const double *v, size_t n, double *out)
{
    double m = -INFINITY, s = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(v[i])) {
            *out = v[i];
            return CG_OK;
        }
        if (v[i] > m) {
            m = v[i];
            at = i;
        }
    }
    if (isinf(m)) { /* all -inf, or an inf input: the max is the answer */
        *out = m;
        return CG_OK;
    }
    for (size_t i = 0; i < n; i++)
        if (i != at)
            s = s + exp(v[i] - m);
    *out = m + log1p(s);
    return CG_OK;
}

static inline double cg_logsumexp_partial(double v, double out)
{
    return v == out ? 1.0 : exp(v - out);  /* softmax(v)_i; 1 for an infinite max */
}

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
        for (uint32_t i = 0; i < n->n_kids; i++)
            bad |= cg_accumulate(k[i], g);
        break;
    case CG_LOGSUMEXP:
        for (uint32_t i = 0; i < n->n_kids; i++)
            bad |= cg_accumulate(k[i], cg_logsumexp_partial(k[i]->data, n->data) * g);
        break;
    case CG_LOCAL: {   /* microgpt's child.grad += local_grad * v.grad */
        const double *local = cg_local_grads(n);
        for (uint32_t i = 0; i < n->n_kids; i++)
            bad |= cg_accumulate(k[i], local[i] * g);
        break;
    }
    case CG_DOT: {
        cg_dot_parts d = cg_dot_of(n);
        for (uint32_t i = 0; i < d.m; i++) {
            double wi = d.w[i]->data, xi = d.x[i]->data;
            bad |= cg_accumulate(d.w[i], xi * g);
            bad |= cg_accumulate(d.x[i], wi * g);
        }
        if (d.bias)
            bad |= cg_accumulate(d.bias, g);
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
