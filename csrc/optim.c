/* Optimizer updates in C: no Python per parameter.
 *
 * Each update first computes every new value without writing anything, and writes only
 * if no finite parameter would become inf or NaN: a learning rate of 1e308 is refused,
 * not turned into a model of infinities.  The same updates run over nodes (an optimizer
 * on its own) and over a replay plan's arrays (Graph.step), bit for bit alike. */
#include <float.h>
#include <math.h>
#include "cgrad.h"
#include "cpu.h"

#ifdef CG_X86_COPIES
int cg_vector_limit = CG_VECTORS_AVX512;
#endif

/* A finite parameter with a finite gradient that would not stay finite. */
static int breaks(double data, double grad, double updated)
{
    return !isfinite(updated) && isfinite(data) && isfinite(grad);
}

static double sgd_update(double data, double grad, double lr, double momentum,
                         double weight_decay, double *velocity)
{
    double g = grad;
    if (weight_decay != 0.0)
        g = g + weight_decay * data;
    if (momentum != 0.0) {
        *velocity = momentum * *velocity + g;
        g = *velocity;
    }
    return data - lr * g;
}

typedef struct {
    double beta1, beta2, eps, weight_decay, step_size, bias2_sqrt;
} adam_rates;

static adam_rates rates(double lr, double beta1, double beta2, double eps,
                        double weight_decay, long step)
{
    return (adam_rates){beta1, beta2, eps, weight_decay,
                        lr / (1.0 - pow(beta1, (double)step)),
                        sqrt(1.0 - pow(beta2, (double)step))};
}

/* Adam's moments, then the new value: g is the gradient with weight decay added. */
#define ADAM_MOMENTS(r, g, m, v)                                                      \
    do {                                                                              \
        (m) = (r).beta1 * (m) + (1.0 - (r).beta1) * (g);                              \
        (v) = (r).beta2 * (v) + (1.0 - (r).beta2) * (g) * (g);                        \
    } while (0)
#define ADAM_STEP(r, data, m, v) ((data) - (r).step_size * (m) / (sqrt(v) / (r).bias2_sqrt + (r).eps))

/* Whether some of out[0..len) is not finite (the block's results, checked after). */
#define ANY_NOT_FINITE(out, len)                                                      \
    __extension__({                                                                   \
        int nf_ = 0;                                                                  \
        for (size_t k_ = 0; k_ < (len); k_++)                                         \
            nf_ |= !(fabs((out)[k_]) <= DBL_MAX);                                     \
        nf_;                                                                          \
    })

/* A block update (its body the last argument) compiled twice, for any x86-64 and for
 * AVX2 (the loops vectorize four wide; a baseline copy checks each result with a
 * scalar compare), and the function calling the copy this CPU runs: the same
 * arithmetic, so the same bits. */
#ifdef CG_X86_COPIES
#define BLOCK_COPIES(name, ARGS, CALL, ...)                                           \
    static int name##_baseline(ARGS) __VA_ARGS__                                      \
    CG_TARGET_AVX2 static int name##_avx2(ARGS) __VA_ARGS__                           \
    static int name(ARGS)                                                             \
    {                                                                                 \
        return cg_has_avx2() ? name##_avx2 CALL : name##_baseline CALL;               \
    }
#else
#define BLOCK_COPIES(name, ARGS, CALL, ...)                                           \
    static int name(ARGS) __VA_ARGS__
#endif

/* Adam's new values of a block of parameters (data d, gradients g with decay added)
 * into out, their new moments into nm and nv; whether some new value is not finite. */
#define ADAM_BLOCK_ARGS                                                               \
    const double *restrict d, const double *restrict g, const double *restrict m,     \
        const double *restrict v, size_t len, adam_rates r, double *restrict out,     \
        double *restrict nm, double *restrict nv

BLOCK_COPIES(adam_block, ADAM_BLOCK_ARGS, (d, g, m, v, len, r, out, nm, nv), {
    for (size_t k = 0; k < len; k++) {
        double mk = m[k], vk = v[k];
        ADAM_MOMENTS(r, g[k], mk, vk);
        nm[k] = mk;
        nv[k] = vk;
        out[k] = ADAM_STEP(r, d[k], mk, vk);
    }
    return ANY_NOT_FINITE(out, len);
})

/* SGD's new values of a block into out, its new velocities into nv; whether some new
 * value is not finite. */
#define SGD_BLOCK_ARGS                                                                \
    const double *restrict d, const double *restrict g, const double *restrict vel,   \
        size_t len, double lr, double momentum, double weight_decay,                  \
        double *restrict out, double *restrict nv

BLOCK_COPIES(sgd_block, SGD_BLOCK_ARGS,
             (d, g, vel, len, lr, momentum, weight_decay, out, nv), {
    for (size_t k = 0; k < len; k++) {
        double vk = vel[k];
        out[k] = sgd_update(d[k], g[k], lr, momentum, weight_decay, &vk);
        nv[k] = vk;
    }
    return ANY_NOT_FINITE(out, len);
})

/* g + weight_decay * d, the gradient Adam's moments see */
static void decay_block(const double *d, const double *g, size_t len, double weight_decay,
                        double *out)
{
    for (size_t k = 0; k < len; k++)
        out[k] = g[k] + weight_decay * d[k];
}

/* Where the parameters live: in nodes (params), or at val[slot[i]] and grad[slot[i]]
 * in a plan's arrays. */
typedef struct {
    cg_node **params;
    double *val;
    const double *grad;
    const uint32_t *slot;
} storage;

/* Parameters go BLOCK at a time, so that the math runs as vector code (one sqrt and one
 * division per vector of parameters) and a block with a non-finite result is checked
 * parameter by parameter. */
enum { BLOCK = 64 };

/* The block of parameters starting at i0: up to BLOCK of them, as two arrays.  In a
 * plan, the parameters whose slots run on from slot[i0] (a neuron's weights and bias
 * do), read in place: *d and *g point into its arrays.  In nodes, BLOCK of them
 * gathered into d_buf and g_buf.  Its length. */
static size_t block_view(const storage *s, size_t i0, size_t n, double *d_buf, double *g_buf,
                         double **d, const double **g)
{
    size_t len = n - i0 < BLOCK ? n - i0 : BLOCK;
    if (!s->params) {
        const uint32_t *slot = s->slot + i0;
        size_t run = 1;
        while (run < len && slot[run] == slot[0] + run)
            run++;
        *d = s->val + slot[0];
        *g = s->grad + slot[0];
        return run;
    }
    for (size_t k = 0; k < len; k++) {
        d_buf[k] = s->params[i0 + k]->data;
        g_buf[k] = s->params[i0 + k]->grad;
    }
    *d = d_buf;
    *g = g_buf;
    return len;
}

/* Writes the new data of the block at i0 (d: its view). */
static void write_block(const storage *s, size_t i0, size_t len, double *restrict d,
                        const double *restrict new_data)
{
    if (s->params)
        for (size_t k = 0; k < len; k++)
            s->params[i0 + k]->data = new_data[k];
    else
        for (size_t k = 0; k < len; k++)
            d[k] = new_data[k];
}

/* The blocks of parameters [start, end). */
#define FOR_EACH_BLOCK(s, start, end, i0, len, d, g, ...)                              \
    for (size_t i0 = (start), len; i0 < (end); i0 += len) {                           \
        double d_buf_[BLOCK], g_buf_[BLOCK], *d;                                      \
        const double *g;                                                              \
        len = block_view(s, i0, end, d_buf_, g_buf_, &d, &g);                         \
        __VA_ARGS__                                                                   \
    }

/* Whether some result of the block broke a parameter: its index, or -1. */
static long first_broken(size_t i0, size_t len, const double *d, const double *g,
                         const double *updated, int any_not_finite)
{
    if (any_not_finite)
        for (size_t k = 0; k < len; k++)
            if (breaks(d[k], g[k], updated[k]))
                return (long)(i0 + k);
    return -1;
}

/* Each update in two passes over a range of its parameters: pass one (check) writes
 * every new value and the new state into the rows given for them and returns -1 or the
 * first parameter it would break; pass two (write) writes the new values, only if no
 * check refused (nothing is written then).  The caller then takes the new state's rows
 * for the state (a pointer swap: nothing is copied back).  Parts of the parameters may
 * run each pass at once: every number is computed as one pass over all of them
 * computes it. */
typedef struct {
    const storage *s;
    size_t start, end;      /* this range */
} span;

static long sgd_check(span r, double lr, double momentum, double weight_decay,
                      const double *velocity, double *new_velocity, double *new_data)
{
    FOR_EACH_BLOCK(r.s, r.start, r.end, i0, len, d, g, {
        int not_finite = sgd_block(d, g, velocity + i0, len, lr, momentum, weight_decay,
                                   new_data + i0, new_velocity + i0);
        long broken = first_broken(i0, len, d, g, new_data + i0, not_finite);
        if (broken >= 0)
            return broken;
    })
    return -1;
}

#define DECAYED(rates, d, g, len, buf)                                                \
    ((rates).weight_decay == 0.0 ? (g)                                                \
                                 : (decay_block(d, g, len, (rates).weight_decay, buf), buf))

static long adam_check(span r, adam_rates rates, const double *m, const double *v,
                       double *new_m, double *new_v, double *new_data)
{
    double decayed[BLOCK];
    FOR_EACH_BLOCK(r.s, r.start, r.end, i0, len, d, g, {
        int not_finite = adam_block(d, DECAYED(rates, d, g, len, decayed), m + i0, v + i0,
                                    len, rates, new_data + i0, new_m + i0, new_v + i0);
        long broken = first_broken(i0, len, d, g, new_data + i0, not_finite);
        if (broken >= 0)
            return broken;
    })
    return -1;
}

static void write_values(span r, const double *new_data)
{
    FOR_EACH_BLOCK(r.s, r.start, r.end, i0, len, d, g, {
        (void)g;
        write_block(r.s, i0, len, d, new_data + i0);
    })
}

long cg_sgd_step(cg_node **params, size_t n, double lr, double momentum,
                 double weight_decay, const double *state, double *next, double *new_data)
{
    storage s = {params, NULL, NULL, NULL};
    span all = {&s, 0, n};
    long broken = sgd_check(all, lr, momentum, weight_decay, state, next, new_data);
    if (broken < 0)
        write_values(all, new_data);
    return broken;
}

long cg_adam_step(cg_node **params, size_t n, double lr, double beta1, double beta2,
                  double eps, double weight_decay, long step, const double *state,
                  double *next, double *new_data)
{
    storage s = {params, NULL, NULL, NULL};
    span all = {&s, 0, n};
    adam_rates r = rates(lr, beta1, beta2, eps, weight_decay, step);
    long broken = adam_check(all, r, state, state + n, next, next + n, new_data);
    if (broken < 0)
        write_values(all, new_data);
    return broken;
}

long cg_update_check(const cg_update *u, double *val, const double *grad, size_t i0,
                     size_t i1)
{
    storage s = {NULL, val, grad, u->slots};
    span part = {&s, i0, i1};
    if (u->kind == CG_UPDATE_SGD)
        return sgd_check(part, u->lr, u->h1, u->h2, u->state, u->next, u->new_data);
    adam_rates r = rates(u->lr, u->h1, u->h2, u->h3, u->h4, u->step);
    return adam_check(part, r, u->state, u->state + u->n, u->next, u->next + u->n,
                      u->new_data);
}

void cg_update_write(const cg_update *u, double *val, const double *grad, size_t i0,
                     size_t i1)
{
    storage s = {NULL, val, grad, u->slots};
    span part = {&s, i0, i1};
    write_values(part, u->new_data);
}

void cg_zero_grads(cg_node **params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        params[i]->grad = 0.0;
}
