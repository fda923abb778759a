/* The math of every op, written once: forward values and local derivatives over plain
 * numbers (scalar ops) or arrays of numbers (n-ary ops), so that the eager path (over
 * nodes, node_ops.h) and replay (over a plan's slots) compute with the very same code.
 * It knows nothing of nodes or graph state.
 *
 * Each formula follows micrograd's Python expression operation for operation (and
 * Python's float ** is C pow), so with -ffp-contract=off the results are bit for bit
 * those of micrograd on the same graph. */
#ifndef CGRAD_OP_MATH_H
#define CGRAD_OP_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "op_table.h"

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

#if defined(__GNUC__)
#define CG_ALWAYS_INLINE static inline __attribute__((always_inline))
/* Every call inside the function inlined: a layer's loop over one activation then gets
 * that op's code alone from cg_forward_scalar's switch.  (Always inlining the switch
 * everywhere made the plan's step-by-step forward 2x slower.) */
#define CG_FLATTEN __attribute__((flatten))
#else
#define CG_ALWAYS_INLINE static inline
#define CG_FLATTEN
#endif

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

/* 1.0 if c else 0.0, without a branch: `(double)(out > 0.0) * g` compiled to a jump
 * around the multiply, which a layer's ReLUs (on or off at random) mispredicted half the
 * time (a third of the pass gathering gradients through them). */
static inline double cg_indicator(int c)
{
    uint64_t bits = UINT64_C(0x3FF0000000000000) & -(uint64_t)(c != 0);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
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

/* ---- the n-ary chain rule, written once for nodes and for slots ------------------------ */

/* Where an n-ary op's kids live, as its chain rule sees them: kid i of a list, its value
 * and adding d to its gradient (nonzero when d is a non-finite contribution that
 * matters).  The eager path's lists hold nodes (node_ops.h), replay's hold a plan's
 * slots (plan_run.c); inlined into each caller, the calls compile to plain loads and adds. */
typedef struct {
    void *ctx;
    double (*value)(void *ctx, const void *list, uint32_t i);
    int (*add)(void *ctx, const void *list, uint32_t i, double d);
} cg_kid_access;

/* An n-ary op's kids: `all` (n of them) for sum, logsumexp and local; for a dot, lists
 * of its m weights and m inputs, and a list holding its bias (NULL: none). */
typedef struct {
    const void *all, *w, *x, *bias;
    uint32_t n, m;
} cg_nary_kids;

/* Add g * d(out)/d(kid) to every kid's gradient, kid by kid in micrograd's order (a
 * dot's weight and input of each term together, then its bias); `local` holds a local
 * op's derivatives.  Nonzero when some contribution that matters was not finite. */
CG_ALWAYS_INLINE int cg_nary_backward(uint8_t op, const cg_nary_kids *k, double out, double g,
                                      const double *local, cg_kid_access a)
{
    int bad = 0;
    switch (op) {
    case CG_SUM:
        for (uint32_t i = 0; i < k->n; i++)
            bad |= a.add(a.ctx, k->all, i, g);
        break;
    case CG_LOGSUMEXP:
        for (uint32_t i = 0; i < k->n; i++)
            bad |= a.add(a.ctx, k->all, i, cg_logsumexp_partial(a.value(a.ctx, k->all, i), out) * g);
        break;
    case CG_LOCAL:   /* microgpt's child.grad += local_grad * v.grad */
        for (uint32_t i = 0; i < k->n; i++)
            bad |= a.add(a.ctx, k->all, i, local[i] * g);
        break;
    case CG_DOT:
        for (uint32_t i = 0; i < k->m; i++) {
            double wi = a.value(a.ctx, k->w, i), xi = a.value(a.ctx, k->x, i);
            bad |= a.add(a.ctx, k->w, i, xi * g);
            bad |= a.add(a.ctx, k->x, i, wi * g);
        }
        if (k->bias)
            bad |= a.add(a.ctx, k->bias, 0, g);
        break;
    default:
        break;
    }
    return bad;
}

#endif
