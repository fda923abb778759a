/* The math of every op, written once: forward value and local derivatives.
 * Eager ops, backward and replay all come through these two functions.
 *
 * Each formula follows micrograd's Python expression operation for operation (and
 * Python's float ** is C pow), so with -ffp-contract=off the results are bit for bit
 * those of micrograd on the same graph. */
#ifndef CGRAD_OPS_H
#define CGRAD_OPS_H

#include <math.h>
#include "cgrad.h"

/* A finite input that gives a non-finite result is an overflow; a non-finite input
 * passes through, as it does in Python. */
static inline cg_status cg_check_finite(double out, double a, double b)
{
    if (isfinite(out) || !isfinite(a) || !isfinite(b))
        return CG_OK;
    return CG_ERR_OVERFLOW;
}

static inline double cg_sigmoid(double x)
{
    if (x >= 0)
        return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static inline cg_status cg_eval_inline(cg_node *n)
{
    cg_node **k = cg_kids(n);
    double a, b, out;
    switch (n->op) {
    case CG_ADD:
        a = k[0]->data; b = k[1]->data;
        out = a + b;
        n->data = out;
        return cg_check_finite(out, a, b);
    case CG_MUL:
        a = k[0]->data; b = k[1]->data;
        out = a * b;
        n->data = out;
        return cg_check_finite(out, a, b);
    case CG_POW:
    case CG_POWV:
        a = k[0]->data;
        b = n->op == CG_POW ? n->arg : k[1]->data;
        if (a == 0.0 && b < 0.0)
            return CG_ERR_ZERODIV;
        if (a < 0.0 && (n->op == CG_POWV || b != floor(b)))
            return CG_ERR_DOMAIN;
        out = pow(a, b);
        n->data = out;
        return cg_check_finite(out, a, b);
    case CG_RELU:
        a = k[0]->data;
        n->data = a < 0.0 ? 0.0 : a;
        return CG_OK;
    case CG_TANH:
        n->data = tanh(k[0]->data);
        return CG_OK;
    case CG_EXP:
        a = k[0]->data;
        out = exp(a);
        n->data = out;
        return cg_check_finite(out, a, 0.0);
    case CG_LOG:
        a = k[0]->data;
        if (a <= 0.0)
            return CG_ERR_DOMAIN;
        n->data = log(a);
        return CG_OK;
    case CG_SIGMOID:
        n->data = cg_sigmoid(k[0]->data);
        return CG_OK;
    case CG_SUM: {
        double s = 0.0;
        int finite_in = 1;
        for (uint32_t i = 0; i < n->n_kids; i++) {
            s = s + k[i]->data;
            finite_in &= isfinite(k[i]->data);
        }
        n->data = s;
        return (isfinite(s) || !finite_in) ? CG_OK : CG_ERR_OVERFLOW;
    }
    case CG_DOT: {
        int has_bias = (n->flags & CG_FLAG_HAS_BIAS) != 0;
        uint32_t m = (n->n_kids - (uint32_t)has_bias) / 2;
        cg_node **w = k, **x = k + m;
        double s = has_bias ? k[2 * m]->data : 0.0;
        int finite_in = isfinite(s);
        for (uint32_t i = 0; i < m; i++) {
            double p = w[i]->data * x[i]->data;
            s = s + p;
            finite_in &= isfinite(w[i]->data) & isfinite(x[i]->data);
        }
        n->data = s;
        return (isfinite(s) || !finite_in) ? CG_OK : CG_ERR_OVERFLOW;
    }
    case CG_LOGSUMEXP: {
        double m = -INFINITY, s = 0.0;
        for (uint32_t i = 0; i < n->n_kids; i++)
            if (k[i]->data > m)
                m = k[i]->data;
        if (isinf(m)) { /* all -inf, or an inf input: the max is the answer */
            n->data = m;
            return CG_OK;
        }
        for (uint32_t i = 0; i < n->n_kids; i++)
            s = s + exp(k[i]->data - m);
        n->data = m + log(s);
        return CG_OK;
    }
    default: /* CG_LEAF, CG_OPAQUE: data is whatever was set */
        return CG_OK;
    }
}

/* kid->grad += d, reporting a non-finite contribution born of a finite grad. */
static inline int cg_accumulate(cg_node *kid, double d)
{
    kid->grad += d;
    return !isfinite(d);
}

static inline cg_status cg_backward_inline(cg_node *n)
{
    cg_node **k = cg_kids(n);
    double g = n->grad;
    double a, b;
    int bad = 0;
    switch (n->op) {
    case CG_ADD:
        bad |= cg_accumulate(k[0], g);
        bad |= cg_accumulate(k[1], g);
        break;
    case CG_MUL:
        a = k[0]->data; b = k[1]->data;
        bad |= cg_accumulate(k[0], b * g);
        bad |= cg_accumulate(k[1], a * g);
        break;
    case CG_POW:
        a = k[0]->data; b = n->arg;
        if (a == 0.0 && b - 1.0 < 0.0)
            return CG_ERR_ZERODIV;
        bad |= cg_accumulate(k[0], (b * pow(a, b - 1.0)) * g);
        break;
    case CG_POWV:
        a = k[0]->data; b = k[1]->data;
        if (a == 0.0 && b - 1.0 < 0.0)
            return CG_ERR_ZERODIV;
        bad |= cg_accumulate(k[0], (b * pow(a, b - 1.0)) * g);
        /* d(a**b)/db = a**b * log(a), taken as 0 at a == 0 as PyTorch does */
        bad |= cg_accumulate(k[1], a == 0.0 ? 0.0 : (n->data * log(a)) * g);
        break;
    case CG_RELU:
        bad |= cg_accumulate(k[0], (n->data > 0.0 ? 1.0 : 0.0) * g);
        break;
    case CG_TANH:
        bad |= cg_accumulate(k[0], (1.0 - pow(n->data, 2.0)) * g);
        break;
    case CG_EXP:
        bad |= cg_accumulate(k[0], n->data * g);
        break;
    case CG_LOG:
        bad |= cg_accumulate(k[0], (1.0 / k[0]->data) * g);
        break;
    case CG_SIGMOID:
        bad |= cg_accumulate(k[0], (n->data * (1.0 - n->data)) * g);
        break;
    case CG_SUM:
        for (uint32_t i = 0; i < n->n_kids; i++)
            bad |= cg_accumulate(k[i], g);
        break;
    case CG_DOT: {
        int has_bias = (n->flags & CG_FLAG_HAS_BIAS) != 0;
        uint32_t m = (n->n_kids - (uint32_t)has_bias) / 2;
        cg_node **w = k, **x = k + m;
        for (uint32_t i = 0; i < m; i++) {
            a = w[i]->data; b = x[i]->data;
            bad |= cg_accumulate(w[i], b * g);
            bad |= cg_accumulate(x[i], a * g);
        }
        if (has_bias)
            bad |= cg_accumulate(k[2 * m], g);
        break;
    }
    case CG_LOGSUMEXP: /* d/dk_i = softmax(k)_i */
        for (uint32_t i = 0; i < n->n_kids; i++)
            bad |= cg_accumulate(k[i], exp(k[i]->data - n->data) * g);
        break;
    default:
        break;
    }
    return (bad && isfinite(g)) ? CG_ERR_OVERFLOW : CG_OK;
}

/* The chain rule over nodes[0..n) in reverse: kids come before parents in nodes. */
static inline cg_status cg_sweep(cg_node **nodes, size_t n, cg_node **failed)
{
    for (size_t i = n; i-- > 0;) {
        cg_status st = cg_backward_inline(nodes[i]);
        if (st != CG_OK) {
            *failed = nodes[i];
            return st;
        }
    }
    return CG_OK;
}

#endif
